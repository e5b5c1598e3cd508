/** `thaw store stats`: the chunk store's size, dedup and per-tier hit rates, from GET /thaw/v1/store/stats. */
import type { Command } from 'commander';
import { addClientOptions, withSession, type ClientFlags } from './client.js';
import { formatBytes, printJson, table } from './output.js';

interface StoreStats {
  Artifacts: number;
  LogicalBytes: number;
  UniqueBytes: number;
  StoredBytes: number;
  StoredChunks: number;
  ReferencedStoredBytes: number;
  DedupRatio: number;
  CompressionRatio: number;
  Tiers: { Tier: string; Hits: number; Misses: number; HitRate: number; Bytes: number; Corrupt: number }[];
}

export function registerStore(program: Command): void {
  const store = program.command('store').description('the chunk store that holds code, layers, code caches and snapshots');
  addClientOptions(store.command('stats').description('logical and stored bytes, dedup ratio, per-tier hit rates')).action(async (flags: ClientFlags) => {
    await withSession(flags, async (s) => {
      const r = await s.thaw<StoreStats>('GET', '/thaw/v1/store/stats');
      if (s.json) return printJson(r);
      process.stdout.write(
        `artifacts          ${r.Artifacts}\n` +
          `logical bytes      ${r.LogicalBytes} (${formatBytes(r.LogicalBytes)})\n` +
          `unique bytes       ${r.UniqueBytes} (${formatBytes(r.UniqueBytes)}, after dedup)\n` +
          `stored bytes       ${r.StoredBytes} (${formatBytes(r.StoredBytes)}, ${r.StoredChunks} chunks, compressed and encrypted)\n` +
          `dedup ratio        ${r.DedupRatio.toFixed(2)}\n` +
          `compression ratio  ${r.CompressionRatio.toFixed(2)}\n\n`,
      );
      process.stdout.write(table(
        ['TIER', 'HITS', 'MISSES', 'HIT RATE', 'BYTES READ', 'CORRUPT'],
        r.Tiers.map((t) => [t.Tier, String(t.Hits), String(t.Misses), `${(t.HitRate * 100).toFixed(1)}%`, formatBytes(t.Bytes), String(t.Corrupt)]),
      ));
    });
  });
}
