import { z } from 'zod';

/**
 * The outcome that snapshot-entry.cjs writes (--report) when a snapshot build ends. It comes from inside the
 * sandbox, next to the function's own code, so it is untrusted: checked here, and only ever turned into a
 * build result or a SnapshotBuildError (never executed, never used as a path).
 */

const detail = z.strictObject({ what: z.string().max(4096), site: z.string().max(4096).optional() });

export const buildReportSchema = z.discriminatedUnion('ok', [
  z.strictObject({
    ok: z.literal(true),
    initMs: z.number().nonnegative(),
    settleMs: z.number().nonnegative(),
    hooks: z.strictObject({ before: z.number().int().nonnegative(), after: z.number().int().nonnegative() }),
    deferred: z.array(z.string().max(64)).max(64),
    pools: z.number().int().nonnegative(),
    signals: z.number().int().nonnegative(),
    handlerIsAsync: z.boolean(),
  }),
  z.strictObject({
    ok: z.literal(false),
    code: z.enum(['InitFailed', 'HookFailed', 'OpenHandles', 'Unsupported']),
    message: z.string().max(65536),
    errorType: z.string().max(256).optional(),
    details: z.array(detail).max(1000),
  }),
]);

export type BuildReport = z.infer<typeof buildReportSchema>;

export function parseBuildReport(text: string): BuildReport | undefined {
  try {
    const r = buildReportSchema.safeParse(JSON.parse(text));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
