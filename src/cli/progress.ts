/**
 * Progress for `thaw deploy`: a bar on stderr while the folder is packaged (files) and while the code is
 * uploaded (bytes of the request body as the socket takes them). Only on a terminal: piped or redirected
 * stderr gets nothing, so logs and scripts stay clean.
 */
import { Readable } from 'node:stream';
import cliProgress from 'cli-progress';
import type { LambdaClient } from '@aws-sdk/client-lambda';
import { formatBytes } from './output.js';

export interface Progress {
  update(value: number): void;
  stop(): void;
}

const NONE: Progress = { update: () => undefined, stop: () => undefined };

export function progressBar(label: string, total: number, unit: 'files' | 'bytes', stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return NONE;
  const fmt = (v: number): string => (unit === 'bytes' ? formatBytes(v) : String(v));
  const bar = new cliProgress.SingleBar(
    { format: `${label.padEnd(10)} [{bar}] {percentage}% | {done} of {size}`, stream, hideCursor: true, barsize: 30, fps: 20 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { done: fmt(0), size: unit === 'bytes' ? fmt(total) : `${total} files` });
  return {
    update: (v) => bar.update(v, { done: fmt(v) }),
    stop: () => bar.stop(),
  };
}

/** Chunk size for streaming a request body, small enough for a smooth bar. */
const CHUNK = 64 * 1024;

/**
 * Report upload progress for the given SDK commands. The serialised (and already signed) body is handed to
 * the HTTP handler as a stream that counts what the socket pulls; a retry gets a fresh stream of the same bytes.
 */
export function trackUploads(client: LambdaClient, commands: readonly string[], start: (totalBytes: number) => Progress): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { body?: unknown };
      const body = request.body;
      if (!commands.includes(context.commandName ?? '') || !(typeof body === 'string' || body instanceof Uint8Array)) return next(args);
      const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      const bar = start(bytes.length);
      function* chunks(): Generator<Buffer> {
        for (let off = 0; off < bytes.length; off += CHUNK) {
          yield bytes.subarray(off, off + CHUNK);
          bar.update(Math.min(off + CHUNK, bytes.length));
        }
      }
      try {
        return await next({ ...args, request: { ...request, body: Readable.from(chunks(), { objectMode: false }) } });
      } finally {
        bar.stop();
      }
    },
    { step: 'deserialize', name: 'thawUploadProgress' },
  );
}
