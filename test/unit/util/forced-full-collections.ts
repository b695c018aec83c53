import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';

/**
 * Records the forced full (mark-compact) collections this process runs from now on, as the gc
 * performance entries Node reports for them (after each collection, from the event loop).
 */
export function observeForcedFullCollections(): { entries: PerformanceEntry[]; waitFor(count: number): Promise<void>; stop(): void } {
  const entries: PerformanceEntry[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as PerformanceEntry & { detail: { kind: number; flags: number } }).detail;
      if (detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR && (detail.flags & constants.NODE_PERFORMANCE_GC_FLAGS_FORCED) !== 0) entries.push(entry);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  return {
    entries,
    // at most half a second: the entries arrive a turn or two after the collection
    async waitFor(count: number): Promise<void> {
      for (let i = 0; i < 50 && entries.length < count; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    },
    stop: () => observer.disconnect(),
  };
}
