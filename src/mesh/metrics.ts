/** Counters by name and label (reason code), read by status and the control API. */
export class MeshMetrics {
  readonly #counters = new Map<string, Map<string, number>>();

  count(name: string, label: string, by = 1): void {
    let byLabel = this.#counters.get(name);
    if (byLabel === undefined) {
      byLabel = new Map();
      this.#counters.set(name, byLabel);
    }
    byLabel.set(label, (byLabel.get(label) ?? 0) + by);
  }

  get(name: string, label?: string): number {
    const byLabel = this.#counters.get(name);
    if (byLabel === undefined) return 0;
    if (label !== undefined) return byLabel.get(label) ?? 0;
    let sum = 0;
    for (const v of byLabel.values()) sum += v;
    return sum;
  }

  toJSON(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, byLabel] of this.#counters) out[name] = Object.fromEntries(byLabel);
    return out;
  }
}
