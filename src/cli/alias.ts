/**
 * `thaw alias NAME ALIAS VERSION [--weight V=W]` creates or updates an alias (without --weight, any routing
 * to a second version is removed); `thaw alias NAME --list`; `thaw alias NAME ALIAS --delete`.
 */
import {
  CreateAliasCommand, DeleteAliasCommand, ListAliasesCommand, UpdateAliasCommand, type AliasConfiguration, type LambdaClient,
} from '@aws-sdk/client-lambda';
import type { Command } from 'commander';
import { addClientOptions, allPages, withSession, type ClientFlags } from './client.js';
import { CliError } from './errors.js';
import { versionWeight } from './flags.js';
import { printJson, table } from './output.js';

interface AliasFlags extends ClientFlags {
  list?: boolean;
  delete?: boolean;
  weight?: Record<string, number>;
  description?: string;
}

export function registerAlias(program: Command): void {
  addClientOptions(
    program
      .command('alias')
      .description('point an alias at a version (create or update), list aliases, or delete one')
      .argument('<name>', 'function name')
      .argument('[alias]', 'alias name')
      .argument('[version]', 'version the alias points to')
      .option('--weight <VERSION=WEIGHT>', 'also send this share (0 to 1) of invocations to another version', versionWeight)
      .option('--description <text>', 'alias description')
      .option('--list', "list the function's aliases")
      .option('--delete', 'delete the alias'),
  ).action(async (name: string, alias: string | undefined, version: string | undefined, flags: AliasFlags) => {
    if (flags.list === true && (alias !== undefined || flags.delete === true)) throw new CliError('--list takes only the function name');
    if (flags.delete === true && (alias === undefined || version !== undefined)) throw new CliError('usage: thaw alias NAME ALIAS --delete');
    if (flags.list !== true && flags.delete !== true && (alias === undefined || version === undefined)) {
      throw new CliError('usage: thaw alias NAME ALIAS VERSION [--weight V=W], thaw alias NAME --list, or thaw alias NAME ALIAS --delete');
    }
    await withSession(flags, async (s) => {
      if (flags.list === true) {
        const aliases = await listAliases(s.lambda, name);
        if (s.json) return printJson({ Aliases: aliases });
        if (aliases.length === 0) return void process.stdout.write(`${name} has no aliases\n`);
        process.stdout.write(table(['ALIAS', 'VERSION', 'ROUTING', 'DESCRIPTION'], aliases.map((a) => [a.Name ?? '-', a.FunctionVersion ?? '-', routing(a), a.Description || '-'])));
        return;
      }
      if (flags.delete === true) {
        await s.lambda.send(new DeleteAliasCommand({ FunctionName: name, Name: alias }));
        if (s.json) printJson({ Deleted: alias });
        else process.stdout.write(`deleted alias ${name}:${alias as string}\n`);
        return;
      }
      const input = {
        FunctionName: name,
        Name: alias as string,
        FunctionVersion: version as string,
        ...(flags.description === undefined ? {} : { Description: flags.description }),
      };
      const weights = flags.weight ?? {};
      const created = Object.keys(weights).length === 0 ? input : { ...input, RoutingConfig: { AdditionalVersionWeights: weights } };
      const a = await s.lambda.send(new CreateAliasCommand(created)).catch((e: unknown) => {
        // It exists: update it, and an empty weight map removes any routing it had.
        if (e instanceof Error && e.name === 'ResourceConflictException') {
          return s.lambda.send(new UpdateAliasCommand({ ...input, RoutingConfig: { AdditionalVersionWeights: weights } }));
        }
        throw e;
      });
      if (s.json) printJson(a);
      else process.stdout.write(`${name}:${a.Name ?? alias} -> ${routing(a)}\n`);
    });
  });
}

async function listAliases(lambda: LambdaClient, name: string): Promise<AliasConfiguration[]> {
  return allPages<AliasConfiguration>(async (marker) => {
    const page = await lambda.send(new ListAliasesCommand({ FunctionName: name, ...(marker === undefined ? {} : { Marker: marker }) }));
    return { items: page.Aliases, next: page.NextMarker };
  });
}

/** "3", or "3 (90%), 4 (10%)" with weighted routing. */
function routing(a: AliasConfiguration): string {
  const weights = Object.entries(a.RoutingConfig?.AdditionalVersionWeights ?? {});
  if (weights.length === 0) return a.FunctionVersion ?? '-';
  const pct = (w: number): string => `${Math.round(w * 1000) / 10}%`;
  const rest = 1 - weights.reduce((sum, [, w]) => sum + w, 0);
  return [`${a.FunctionVersion ?? '-'} (${pct(rest)})`, ...weights.map(([v, w]) => `${v} (${pct(w)})`)].join(', ');
}
