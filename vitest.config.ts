import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 180_000,
    // e2e suites name their namespaces, subnets and temp dirs after their pid, so two files can run
    // at once; the machine has 2 cores.
    fileParallelism: true,
    maxWorkers: 2,
    pool: 'forks',
    // .ci/run reads the JSON report to print the plain "N passed, N failed" line.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' },
  },
});
