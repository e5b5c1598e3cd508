import { pino, type Logger } from 'pino';

export type { Logger };

/** Library code gets its logger passed in; this is the silent default. */
export const silentLogger: Logger = pino({ level: 'silent' });

export function createLogger(level: string = process.env.THAW_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { svc: 'thaw' } }, pino.destination(2));
}
