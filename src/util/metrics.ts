import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Thaw's metrics in Prometheus' text format (prom-client), served at GET /thaw/v1/metrics. One registry per
 * server, so that servers in one process (tests) keep their counts apart. Labels stay bounded: function names
 * and a handful of start paths and outcomes.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly invocations = new Counter({
    name: 'thaw_invocations_total',
    help: 'Invocations run, by function and whether they started an environment (cold) or reused one (warm).',
    labelNames: ['function', 'start'] as const,
    registers: [this.registry],
  });

  readonly functionErrors = new Counter({
    name: 'thaw_function_errors_total',
    help: 'Invocations that ended in a function error (X-Amz-Function-Error), by function.',
    labelNames: ['function'] as const,
    registers: [this.registry],
  });

  readonly coldStarts = new Counter({
    name: 'thaw_cold_starts_total',
    help: 'Environments started for an invocation, by function and start path (plain, stem, code-cache, restore, cell).',
    labelNames: ['function', 'path'] as const,
    registers: [this.registry],
  });

  readonly startSeconds = new Histogram({
    name: 'thaw_start_duration_seconds',
    help: 'Time from placing an environment to the runtime asking for its first invocation, by start path.',
    labelNames: ['path'] as const,
    buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10],
    registers: [this.registry],
  });

  readonly initFailures = new Counter({
    name: 'thaw_init_failures_total',
    help: 'Environments whose Init (or restore) failed, by function and error type.',
    labelNames: ['function', 'type'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'thaw_process_' });
  }

  /** Gauges read when scraped: environments by state, cells ready by kind. Once. */
  watch(gauges: { environments: () => Record<string, number>; cells: () => Record<string, number> }): void {
    const { environments, cells } = gauges;
    new Gauge({
      name: 'thaw_environments',
      help: 'Execution environments on this worker, by state.',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(environments())) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'thaw_cells_ready',
      help: 'Pre-started cells waiting, by kind (stem: a booted runtime; restore: a sandbox for a snapshot restore).',
      labelNames: ['kind'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const [kind, n] of Object.entries(cells())) this.set({ kind }, n);
      },
    });
  }

  /** A cold start completed: its path (for example "restore+cell") and how long the start took. */
  coldStart(fn: string, path: string, ms: number): void {
    this.coldStarts.inc({ function: fn, path });
    this.startSeconds.observe({ path }, ms / 1000);
  }

  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
