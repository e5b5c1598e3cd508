import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CreateFunctionCommand } from '@aws-sdk/client-lambda';
import { ROLE, startServer, zipFiles, type RunningServer } from '../helpers/server.js';
import { THAW_BIN, cliEnv } from './run.js';

/**
 * Item 12 of issue 10: the CLI printed a function's output and log lines raw, so a function could send escape
 * sequences to the operator's terminal (rewrite the screen, set the title, reorder text). Now they are shown
 * escaped on a terminal and in every log line; piped output stays the function's exact bytes.
 */

/** What the function answers, byte for byte: OSC title, clear screen, C1 CSI, a right-to-left override, a tab. */
const PAYLOAD = Buffer.from('\x1b]0;pwned\x07\x1b[2J\u009b31m\u202eevil\tTAB\n', 'utf8');
const BOOTSTRAP = `#!/bin/sh
set -eu
API="http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime"
printf '\\033]0;pwned\\007\\033[2J\\302\\23331m\\342\\200\\256evil\\tTAB\\n' > /tmp/payload
while true; do
  HEADERS=$(mktemp)
  curl -sS -D "$HEADERS" "$API/invocation/next" >/dev/null
  ID=$(grep -i Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  printf 'log \\033[31mred\\033]0;title\\007 \\302\\233 \\342\\200\\256rtl\\n'
  curl -sS -X POST --data-binary @/tmp/payload "$API/invocation/$ID/response" >/dev/null
done
`;

/** Bytes a terminal acts on: ESC, BEL, CR, the C1 CSI (UTF-8 c2 9b) and U+202E (e2 80 ae). */
function assertInert(out: Buffer, what: string): void {
  for (const [name, seq] of [['ESC', [0x1b]], ['BEL', [0x07]], ['C1 CSI', [0xc2, 0x9b]], ['RLO', [0xe2, 0x80, 0xae]]] as const) {
    assert.equal(out.indexOf(Buffer.from(seq)), -1, `${what} carries a raw ${name}: ${JSON.stringify(out.toString('latin1'))}`);
  }
}

interface Run { code: number | null; stdout: Buffer; stderr: Buffer }

function run(cmd: string, args: readonly string[], env: Record<string, string>): Promise<Run> {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }));
  });
}

const thaw = (env: Record<string, string>, ...args: string[]): Promise<Run> => run(process.execPath, [THAW_BIN, ...args], env);

/** Run the CLI with its stdout and stderr on a pseudo-terminal (util-linux script), as an operator would. */
const onTerminal = (env: Record<string, string>, ...args: string[]): Promise<Run> =>
  run('script', ['-qefc', [process.execPath, THAW_BIN, ...args].map((a) => `'${a}'`).join(' '), '/dev/null'], env);

describe('the CLI never sends a function\'s control characters to the terminal', () => {
  let s: RunningServer;
  let env: Record<string, string>;

  before(async () => {
    s = await startServer({ args: ['--no-stem-cells'] });
    env = cliEnv(s.url);
    await s.client.send(new CreateFunctionCommand({
      FunctionName: 'evil', Runtime: 'provided.al2023', Role: ROLE, Handler: 'x',
      Code: { ZipFile: await zipFiles({ 'bootstrap*': BOOTSTRAP }) },
    }));
  });
  after(async () => {
    await s.stop();
  });

  test('invoke into a pipe: the exact bytes the function answered', async () => {
    const r = await thaw(env, 'invoke', 'evil', '{}');
    assert.equal(r.code, 0, r.stderr.toString());
    assert.deepEqual(r.stdout, PAYLOAD);
  });

  test('invoke on a terminal: control characters shown escaped, tab and newline kept', async () => {
    const r = await onTerminal(env, 'invoke', 'evil', '{}');
    assert.equal(r.code, 0, r.stdout.toString());
    assertInert(r.stdout, 'invoke on a terminal');
    const text = r.stdout.toString('utf8');
    assert.ok(text.includes('\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m\\u202eevil\tTAB'), JSON.stringify(text));
  });

  test('invoke --tail: the log tail on stderr is escaped even into a pipe', async () => {
    const r = await thaw(env, 'invoke', 'evil', '{}', '--tail');
    assert.equal(r.code, 0, r.stderr.toString());
    assertInert(r.stderr, 'the log tail');
    assert.match(r.stderr.toString(), /log \\x1b\[31mred\\x1b\]0;title\\x07 \\x9b \\u202ertl/);
    assert.match(r.stderr.toString(), /^REPORT /m);
    assert.deepEqual(r.stdout, PAYLOAD);
  });

  test('invoke --json: still valid JSON with the same payload, no raw control characters', async () => {
    for (const r of [await thaw(env, 'invoke', 'evil', '{}', '--json', '--tail'), await onTerminal(env, 'invoke', 'evil', '{}', '--json')]) {
      assert.equal(r.code, 0, r.stderr.toString());
      assertInert(r.stdout, 'invoke --json');
      const doc = JSON.parse(r.stdout.toString('utf8')) as { Payload: string; Log?: string };
      assert.equal(doc.Payload, PAYLOAD.toString('utf8'));
      if (doc.Log !== undefined) assert.match(doc.Log, /log \x1b\[31mred/);
    }
  });

  test('logs, human and --json, into a pipe and on a terminal: escaped; --json parses back to the line', async () => {
    for (const r of [await thaw(env, 'logs', 'evil'), await onTerminal(env, 'logs', 'evil')]) {
      assert.equal(r.code, 0, r.stderr.toString());
      assertInert(r.stdout, 'logs');
      assert.match(r.stdout.toString(), /log \\x1b\[31mred\\x1b\]0;title\\x07 \\x9b \\u202ertl/);
    }
    const j = await thaw(env, 'logs', 'evil', '--json');
    assertInert(j.stdout, 'logs --json');
    const lines = j.stdout.toString('utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as { message: string });
    assert.ok(lines.some((l) => l.message.includes('log \x1b[31mred\x1b]0;title\x07 \u009b \u202ertl')), 'the --json line keeps the message itself');
  });
});
