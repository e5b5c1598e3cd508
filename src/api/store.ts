import { ThawError } from '../util/errors.js';
import type { ApiContext, ApiResponse, Route } from './context.js';
import { route } from './context.js';

/** GET /thaw/v1/store/stats: what the chunk store holds, how well it dedups, how each tier is hit. */
async function stats(ctx: ApiContext): Promise<ApiResponse> {
  if (ctx.store === undefined) throw new ThawError('ServiceUnavailable', 'This server has no chunk store.');
  const s = await ctx.store.stats();
  return {
    status: 200,
    json: {
      Artifacts: s.artifacts,
      LogicalBytes: s.logicalBytes,
      UniqueBytes: s.uniqueBytes,
      UniqueChunks: s.uniqueChunks,
      StoredBytes: s.storedBytes,
      StoredChunks: s.storedChunks,
      ReferencedStoredBytes: s.referencedStoredBytes,
      DedupRatio: s.dedupRatio,
      CompressionRatio: s.compressionRatio,
      Tiers: s.tiers.map((t) => ({ Tier: t.tier, Hits: t.hits, Misses: t.misses, HitRate: t.hitRate, Bytes: t.bytes, Corrupt: t.corrupt })),
    },
  };
}

export const storeRoutes: readonly Route[] = [route('GET', '/thaw/v1/store/stats', 'GetStoreStats', stats)];
