/**
 * `thaw logs NAME`: a function's log lines from Thaw's log endpoint. Without --since: the newest --limit lines;
 * with --since: lines from that time on (at most --limit). --follow keeps asking for lines after the last one
 * seen (every 500 ms) until interrupted. Lines of an Event invocation carry its attempt number (--json: `attempt`).
 */
import type { Command } from 'commander';
import { addClientOptions, withSession, type ClientFlags, type Session } from './client.js';
import { intOption, sinceOption } from './flags.js';
import { sleep } from './sleep.js';
import { escapeControls, escapeLogMessage, terminalSafeJson } from './escape.js';

/** One line as /thaw/v1/functions/{name}/logs returns it. */
export interface LogEvent {
  seq: number;
  functionName: string;
  version: string;
  requestId: string | null;
  timestamp: number;
  message: string;
  /** Attempt number of an asynchronous (Event) invocation; its attempts share one request id. */
  attempt?: number;
}

interface LogsFlags extends ClientFlags {
  follow?: boolean;
  since?: number;
  limit: number;
}

const POLL_MS = 500;

export function registerLogs(program: Command): void {
  addClientOptions(
    program
      .command('logs')
      .description("print a function's log lines")
      .argument('<name>', 'function name')
      .option('-f, --follow', 'keep printing new lines until interrupted (Ctrl-C)')
      .option('--since <when>', 'from this time on: 30s, 10m, 2h, 1d ago, or an ISO time', sinceOption())
      .option('--limit <n>', 'at most this many lines (per request when following)', intOption(1, 10000), 100),
  ).action(async (name: string, flags: LogsFlags) => {
    await withSession(flags, async (s) => {
      const stop = new AbortController();
      const onSignal = (): void => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await printLogs(s, name, flags, stop.signal);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
  });
}

async function printLogs(s: Session, name: string, flags: LogsFlags, signal: AbortSignal): Promise<void> {
  const path = `/thaw/v1/functions/${encodeURIComponent(name)}/logs`;
  const fetchPage = async (query: Record<string, number | undefined>): Promise<LogEvent[] | undefined> => {
    try {
      return (await s.thaw<{ events: LogEvent[] }>('GET', path, { ...query, limit: flags.limit }, signal)).events;
    } catch (e) {
      if (signal.aborted) return undefined;
      throw e;
    }
  };
  const first = await fetchPage({ since: flags.since });
  if (first === undefined) return;
  first.forEach((e) => print(e, s.json));
  if (flags.follow !== true) return;
  let last = first.at(-1)?.seq;
  while (!signal.aborted) {
    // Until a line has been seen, keep the --since filter; afterwards, everything after the last line.
    const page = await fetchPage(last === undefined ? { since: flags.since, afterSeq: 0 } : { afterSeq: last });
    if (page === undefined) return;
    page.forEach((e) => print(e, s.json));
    last = page.at(-1)?.seq ?? last;
    if (page.length < flags.limit) await sleep(POLL_MS, signal);
  }
}

function print(e: LogEvent, json: boolean): void {
  const time = new Date(e.timestamp).toISOString();
  const message = e.message.replace(/[\r\n]+$/, '');
  if (json) {
    process.stdout.write(`${terminalSafeJson(JSON.stringify({ timestamp: time, requestId: e.requestId, message, seq: e.seq, version: e.version, ...(e.attempt === undefined ? {} : { attempt: e.attempt }) }))}\n`);
  } else {
    // A function writes these lines: whatever a terminal would act on is shown escaped, on a terminal or not.
    process.stdout.write(`${time} ${escapeControls(e.requestId ?? '-')} ${escapeLogMessage(message)}\n`);
  }
}
