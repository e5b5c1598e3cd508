import { Command } from 'commander';
import { registerAlias } from './alias.js';
import { registerDeploy } from './deploy.js';
import { describeError } from './errors.js';
import { escapeControls } from './escape.js';
import { registerFunctions } from './functions.js';
import { registerInvoke } from './invoke.js';
import { registerLayers } from './layers.js';
import { registerLogs } from './logs.js';
import { registerServe } from './serve.js';
import { registerSnapcheck } from './snapcheck.js';
import { registerStore } from './store.js';

const program = new Command();
program
  .name('thaw')
  .description('Thaw: serverless functions on your own machines, compatible with the AWS Lambda APIs')
  // Usage errors are one line too: `thaw: unknown option '--x'`.
  .configureOutput({ outputError: (str, write) => write(`thaw: ${str.replace(/^error: /, '')}`) });

registerServe(program);
registerDeploy(program);
registerInvoke(program);
registerLogs(program);
registerFunctions(program);
registerAlias(program);
registerLayers(program);
registerSnapcheck(program);
registerStore(program);

// `thaw logs ... | head` closes stdout early: that is not an error worth a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`thaw: ${escapeControls(describeError(e))}\n`);
  process.exitCode = 1;
});
