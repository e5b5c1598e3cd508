import { Command, InvalidArgumentError } from 'commander';
import { registerServe } from './serve.js';

const program = new Command();
program
  .name('thaw')
  .description('Thaw: serverless functions on your own machines, compatible with the AWS Lambda APIs')
  .showHelpAfterError();

registerServe(program);

program.parseAsync(process.argv).catch((e: unknown) => {
  const msg = e instanceof InvalidArgumentError ? e.message : e instanceof Error ? e.message : String(e);
  process.stderr.write(`thaw: ${msg}\n`);
  process.exitCode = 1;
});
