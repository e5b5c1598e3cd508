import { createHmac } from 'node:crypto';
import { ThawError } from '../util/errors.js';
import { parseFunctionRef, resolveQualifier } from '../control/arn.js';
import {
  CreateFunctionInput, PublishVersionInput, UpdateFunctionCodeInput, UpdateFunctionConfigurationInput, parseInput,
} from '../control/schema.js';
import { DEFAULTS, renderConfiguration, type FunctionConfig, type VersionRecord } from '../control/model.js';
import { runtimeTable } from '../worker/runtimes.js';
import { parseFunctionTarget } from '../control/destinations.js';
import type { ApiContext, ApiRequest, ApiResponse, Route } from './context.js';
import { route } from './context.js';
import { intParam, parseJson } from './http.js';
import { checkCombinedSize, checkFunctionLayers } from './function-layers.js';

/** Direct-upload limit of a zipped package (Lambda: 50 MB), and of the request carrying it as base64. */
export const MAX_ZIP_BYTES = 50 * 1024 * 1024;
export const MAX_CODE_REQUEST = 70_167_211;

const RESERVED_ENV = new Set([
  '_HANDLER', '_X_AMZN_TRACE_ID', 'AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_EXECUTION_ENV', 'AWS_LAMBDA_FUNCTION_NAME',
  'AWS_LAMBDA_FUNCTION_MEMORY_SIZE', 'AWS_LAMBDA_FUNCTION_VERSION', 'AWS_LAMBDA_INITIALIZATION_TYPE',
  'AWS_LAMBDA_LOG_GROUP_NAME', 'AWS_LAMBDA_LOG_STREAM_NAME', 'AWS_ACCESS_KEY', 'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_LAMBDA_RUNTIME_API', 'LAMBDA_TASK_ROOT', 'LAMBDA_RUNTIME_DIR',
]);

/** The function name from the path, and the qualifier from the name or the Qualifier query parameter. */
export function target(req: ApiRequest): { name: string; qualifier: string | undefined } {
  const ref = parseFunctionRef(req.params.FunctionName ?? '');
  return { name: ref.name, qualifier: resolveQualifier(ref, req.url.searchParams.get('Qualifier') ?? undefined) };
}

function checkRuntime(runtime: string | undefined | null): void {
  if (runtime === undefined || runtime === null) return;
  if (!runtimeTable().has(runtime)) {
    throw new ThawError('InvalidParameterValue', `The runtime parameter of ${runtime} is not supported by this Thaw installation. Supported runtimes: ${[...runtimeTable().keys()].join(', ')}`);
  }
}

function checkEnv(vars: Record<string, string> | undefined): Record<string, string> {
  if (vars === undefined) return {};
  const reserved = Object.keys(vars).filter((k) => RESERVED_ENV.has(k));
  if (reserved.length > 0) {
    throw new ThawError('InvalidParameterValue', `Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: ${reserved.join(', ')}`);
  }
  const bad = Object.keys(vars).find((k) => !/^[a-zA-Z]([a-zA-Z0-9_])+$/.test(k));
  if (bad !== undefined) {
    throw new ThawError('Validation', `1 validation error detected: Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+]`);
  }
  if (Buffer.byteLength(JSON.stringify(vars)) > 4096) {
    throw new ThawError('InvalidParameterValue', 'Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit.');
  }
  return { ...vars };
}

function decodeZip(zipFile: string | undefined, s3Bucket: string | undefined): Buffer {
  if (zipFile === undefined) {
    if (s3Bucket !== undefined) throw new ThawError('InvalidParameterValue', 'Thaw accepts deployment packages as ZipFile; S3Bucket/S3Key are not supported.');
    throw new ThawError('InvalidParameterValue', 'Please provide a source for function code.');
  }
  const zip = Buffer.from(zipFile, 'base64');
  if (zip.length > MAX_ZIP_BYTES) throw new ThawError('RequestTooLarge', `Request must be smaller than ${MAX_CODE_REQUEST} bytes for the CreateFunction operation`);
  if (zip.length === 0) throw new ThawError('InvalidZipFile', 'Could not unzip uploaded file. Please check your file, then try to upload again.');
  return zip;
}

/** DeadLetterConfig.TargetArn: '' removes it; otherwise a function of this account and region. */
function deadLetterTarget(ctx: ApiContext, name: string, arn: string | undefined): string | undefined {
  if (arn === undefined || arn === '') return undefined;
  parseFunctionTarget(arn, ctx.region, name, 'DeadLetterConfig.TargetArn');
  return arn;
}

function configOut(ctx: ApiContext, v: VersionRecord): Record<string, unknown> {
  return renderConfiguration(v, ctx.region, (arn) => ctx.layers.codeSize(arn));
}

async function createFunction(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const input = parseInput(CreateFunctionInput, parseJson(req.body));
  if (input.PackageType === 'Image') throw new ThawError('InvalidParameterValue', 'Thaw runs .zip deployment packages; container images are not supported.');
  if (input.Runtime === undefined || input.Handler === undefined) {
    throw new ThawError('InvalidParameterValue', 'Runtime and Handler are mandatory parameters for functions created with deployment packages.');
  }
  checkRuntime(input.Runtime);
  const env = checkEnv(input.Environment?.Variables);
  if (ctx.registry.functionExists(input.FunctionName)) throw new ThawError('ResourceConflict', `Function already exist: ${input.FunctionName}`);
  const dlq = deadLetterTarget(ctx, input.FunctionName, input.DeadLetterConfig?.TargetArn);
  const config: FunctionConfig = {
    runtime: input.Runtime,
    handler: input.Handler,
    role: input.Role,
    description: input.Description ?? '',
    timeoutSec: input.Timeout ?? DEFAULTS.timeoutSec,
    memoryMb: input.MemorySize ?? DEFAULTS.memoryMb,
    env,
    ephemeralMb: input.EphemeralStorage?.Size ?? DEFAULTS.ephemeralMb,
    snapStart: input.SnapStart?.ApplyOn ?? 'None',
    architecture: input.Architectures?.[0] ?? 'x86_64',
    layers: input.Layers ?? [],
    ...(dlq === undefined ? {} : { deadLetterTarget: dlq }),
  };
  const layers = ctx.layers.forFunction(config.layers);
  const code = await ctx.code.put(decodeZip(input.Code.ZipFile, input.Code.S3Bucket));
  try {
    await checkCombinedSize(layers, await ctx.code.materialise(code.sha256));
    const r = ctx.registry.createFunction(input.FunctionName, config, code, input.Tags ?? {}, input.Publish === true);
    return { status: 201, json: configOut(ctx, r.published ?? r.latest) };
  } finally {
    ctx.code.release(code.sha256);
  }
}

function getFunction(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = target(req);
  const { version } = ctx.registry.resolve(t.name, t.qualifier);
  const expires = Date.now() + 10 * 60 * 1000;
  const sig = codeLinkSignature(ctx.linkSecret, version.codeSha256, expires);
  const reserved = ctx.concurrency.reservedOf(t.name);
  return {
    status: 200,
    json: {
      Configuration: configOut(ctx, version),
      Code: { RepositoryType: 'S3', Location: `${req.origin}/thaw/v1/code/${version.codeSha256}.zip?expires=${expires}&signature=${sig}` },
      Tags: ctx.registry.tags(t.name),
      ...(reserved === undefined ? {} : { Concurrency: { ReservedConcurrentExecutions: reserved } }),
    },
  };
}

export function codeLinkSignature(secret: Buffer, sha256: string, expires: number): string {
  return createHmac('sha256', secret).update(`${sha256}\n${expires}`).digest('hex');
}

function getConfiguration(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = target(req);
  return { status: 200, json: configOut(ctx, ctx.registry.resolve(t.name, t.qualifier).version) };
}

function listFunctions(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const max = intParam(req.url.searchParams.get('MaxItems') ?? undefined, 'MaxItems', 1, 10000) ?? 50;
  const all = req.url.searchParams.get('FunctionVersion') === 'ALL';
  const page = ctx.registry.listFunctions(req.url.searchParams.get('Marker') ?? undefined, max, all);
  return { status: 200, json: { Functions: page.items.map((v) => configOut(ctx, v)), ...(page.next === undefined ? {} : { NextMarker: page.next }) } };
}

async function updateCode(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const t = target(req);
  const input = parseInput(UpdateFunctionCodeInput, parseJson(req.body));
  if (input.ImageUri !== undefined) throw new ThawError('InvalidParameterValue', 'Thaw runs .zip deployment packages; container images are not supported.');
  ctx.registry.mustVersion(t.name, '$LATEST');
  const zip = decodeZip(input.ZipFile, input.S3Bucket);
  const code = await ctx.code.put(zip);
  try {
    await checkCombinedSize(ctx.layers.pinned(ctx.registry.mustVersion(t.name, '$LATEST').config.layers), await ctx.code.materialise(code.sha256));
    if (input.DryRun === true) {
      const cur = ctx.registry.mustVersion(t.name, '$LATEST');
      return { status: 200, json: configOut(ctx, { ...cur, codeSha256: code.sha256, codeSize: code.size }) };
    }
    const r = ctx.registry.updateCode(t.name, code, input.RevisionId, input.Publish === true);
    return { status: 200, json: configOut(ctx, r.published ?? r.latest) };
  } finally {
    ctx.code.release(code.sha256);
  }
}

async function updateConfiguration(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const t = target(req);
  const input = parseInput(UpdateFunctionConfigurationInput, parseJson(req.body));
  checkRuntime(input.Runtime);
  if (input.Layers !== undefined) await checkFunctionLayers(ctx, input.Layers, await ctx.code.materialise(ctx.registry.mustVersion(t.name, '$LATEST').codeSha256));
  const env = input.Environment === undefined ? undefined : checkEnv(input.Environment.Variables ?? {});
  const dlq = input.DeadLetterConfig === undefined ? undefined : deadLetterTarget(ctx, t.name, input.DeadLetterConfig.TargetArn);
  const v = ctx.registry.updateConfig(t.name, (c) => ({
    ...c,
    ...(input.Runtime === undefined ? {} : { runtime: input.Runtime }),
    ...(input.Handler === undefined ? {} : { handler: input.Handler }),
    ...(input.Role === undefined ? {} : { role: input.Role }),
    ...(input.Description === undefined ? {} : { description: input.Description }),
    ...(input.Timeout === undefined ? {} : { timeoutSec: input.Timeout }),
    ...(input.MemorySize === undefined ? {} : { memoryMb: input.MemorySize }),
    ...(env === undefined ? {} : { env }),
    ...(input.EphemeralStorage === undefined ? {} : { ephemeralMb: input.EphemeralStorage.Size }),
    ...(input.SnapStart === undefined ? {} : { snapStart: input.SnapStart.ApplyOn }),
    ...(input.Layers === undefined ? {} : { layers: input.Layers }),
    // An empty TargetArn removes the dead-letter target (undefined is not stored).
    ...(input.DeadLetterConfig === undefined ? {} : { deadLetterTarget: dlq }),
  }), input.RevisionId);
  return { status: 200, json: configOut(ctx, v) };
}

async function deleteFunction(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const t = target(req);
  ctx.registry.deleteFunction(t.name, t.qualifier);
  await ctx.pool.drain(t.name, t.qualifier);
  // After the drain: lines its environments wrote while stopping go too.
  if (t.qualifier === undefined) await ctx.logs.deleteFunction(t.name);
  return { status: 204 };
}

function publishVersion(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = target(req);
  const input = parseInput(PublishVersionInput, parseJson(req.body));
  const sha = input.CodeSha256 === undefined ? undefined : Buffer.from(input.CodeSha256, 'base64').toString('hex');
  const v = ctx.registry.publishVersion(t.name, sha, input.Description, input.RevisionId);
  return { status: 201, json: configOut(ctx, v) };
}

function listVersions(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const t = target(req);
  const max = intParam(req.url.searchParams.get('MaxItems') ?? undefined, 'MaxItems', 1, 10000) ?? 50;
  const page = ctx.registry.listVersions(t.name, req.url.searchParams.get('Marker') ?? undefined, max);
  return { status: 200, json: { Versions: page.items.map((v) => configOut(ctx, v)), ...(page.next === undefined ? {} : { NextMarker: page.next }) } };
}

function accountSettings(ctx: ApiContext): ApiResponse {
  const c = ctx.registry.counts();
  return {
    status: 200,
    json: {
      AccountLimit: {
        TotalCodeSize: ctx.code.maxStoredBytes,
        CodeSizeUnzipped: 262144000,
        CodeSizeZipped: MAX_ZIP_BYTES,
        ConcurrentExecutions: ctx.limits.accountConcurrency,
        UnreservedConcurrentExecutions: ctx.concurrency.unreservedLimit(),
      },
      // Code as stored (compressed, deduplicated within a package), not as zipped.
      AccountUsage: { TotalCodeSize: ctx.code.storedBytes(), FunctionCount: c.functions },
    },
  };
}

const F = '/2015-03-31/functions/{FunctionName}';
export const functionRoutes: readonly Route[] = [
  route('POST', '/2015-03-31/functions', 'CreateFunction', createFunction, MAX_CODE_REQUEST),
  route('GET', '/2015-03-31/functions', 'ListFunctions', listFunctions),
  route('GET', F, 'GetFunction', getFunction),
  route('DELETE', F, 'DeleteFunction', deleteFunction),
  route('GET', `${F}/configuration`, 'GetFunctionConfiguration', getConfiguration),
  route('PUT', `${F}/configuration`, 'UpdateFunctionConfiguration', updateConfiguration),
  route('PUT', `${F}/code`, 'UpdateFunctionCode', updateCode, MAX_CODE_REQUEST),
  route('POST', `${F}/versions`, 'PublishVersion', publishVersion),
  route('GET', `${F}/versions`, 'ListVersionsByFunction', listVersions),
  route('GET', '/2016-08-19/account-settings', 'GetAccountSettings', accountSettings),
];
