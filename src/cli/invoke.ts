/**
 * `thaw invoke NAME[:QUALIFIER] [PAYLOAD]`: the response payload on stdout, the log tail (`--tail`) on stderr,
 * exit code 1 when the function returned an error (after printing its payload). The payload is the function's
 * exact bytes when stdout is a file or a pipe; on a terminal, and always in the log tail, control characters are
 * shown escaped (src/cli/escape.ts).
 */
import { readFile } from 'node:fs/promises';
import { InvokeCommand } from '@aws-sdk/client-lambda';
import type { Command } from 'commander';
import { addClientOptions, withSession, type ClientFlags } from './client.js';
import { CliError } from './errors.js';
import { printJson } from './output.js';
import { escapeControls, escapeLogMessage } from './escape.js';

interface InvokeFlags extends ClientFlags {
  file?: string;
  qualifier?: string;
  tail?: boolean;
  event?: boolean;
}

export function registerInvoke(program: Command): void {
  addClientOptions(
    program
      .command('invoke')
      .description('invoke a function and print its response')
      .argument('<function>', 'NAME or NAME:QUALIFIER (version or alias)')
      .argument('[payload]', 'the event as JSON, or - to read it from stdin')
      .option('--file <path>', 'read the event from a file (- for stdin)')
      .option('--qualifier <qualifier>', 'version or alias')
      .option('--tail', 'print the end of the invocation log (START ... REPORT) to stderr')
      .option('--event', 'invoke asynchronously (InvocationType Event): queue it and return'),
  ).action(async (fn: string, payloadArg: string | undefined, flags: InvokeFlags) => {
    const payload = await readPayload(payloadArg, flags.file);
    await withSession(flags, async (s) => {
      const r = await s.lambda.send(new InvokeCommand({
        FunctionName: fn,
        ...(flags.qualifier === undefined ? {} : { Qualifier: flags.qualifier }),
        ...(payload === undefined ? {} : { Payload: payload }),
        InvocationType: flags.event === true ? 'Event' : 'RequestResponse',
        LogType: flags.tail === true && flags.event !== true ? 'Tail' : 'None',
      }));
      const requestId = r.$metadata.requestId;
      const log = r.LogResult === undefined ? undefined : Buffer.from(r.LogResult, 'base64').toString('utf8');
      const body = Buffer.from(r.Payload ?? new Uint8Array());
      if (s.json) {
        printJson({
          StatusCode: r.StatusCode,
          RequestId: requestId,
          ...(r.ExecutedVersion === undefined ? {} : { ExecutedVersion: r.ExecutedVersion }),
          ...(r.FunctionError === undefined ? {} : { FunctionError: r.FunctionError }),
          ...(flags.event === true ? {} : { Payload: parsePayload(body) }),
          ...(log === undefined ? {} : { Log: log }),
        });
      } else if (flags.event === true) {
        process.stdout.write(`queued ${escapeControls(requestId ?? '')}\n`);
      } else {
        if (log !== undefined) {
          const lines = log.split('\n');
          if (lines.at(-1) === '') lines.pop();
          process.stderr.write(lines.map((l) => `${escapeLogMessage(l)}\n`).join(''));
        }
        if (process.stdout.isTTY) {
          const text = escapeControls(body.toString('utf8'));
          process.stdout.write(text.length > 0 && !text.endsWith('\n') ? `${text}\n` : text);
        } else {
          process.stdout.write(body);
        }
      }
      if (r.FunctionError !== undefined) {
        process.stderr.write(`thaw: the function returned an error (${r.FunctionError})\n`);
        process.exitCode = 1;
      }
    });
  });
}

async function readPayload(arg: string | undefined, file: string | undefined): Promise<Buffer | undefined> {
  if (arg !== undefined && file !== undefined) throw new CliError('give the payload either as an argument or with --file, not both');
  const source = file ?? (arg === '-' ? '-' : undefined);
  if (source === '-') return readStdin();
  if (source !== undefined) {
    return readFile(source).catch((e: unknown) => {
      throw new CliError(`cannot read ${source}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    });
  }
  return arg === undefined ? undefined : Buffer.from(arg, 'utf8');
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The payload as JSON when it is JSON (it normally is), else as text. */
function parsePayload(body: Buffer): unknown {
  const text = body.toString('utf8');
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
