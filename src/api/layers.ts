import { ThawError } from '../util/errors.js';
import { ACCOUNT_ID } from '../control/arn.js';
import { hexToBase64, lambdaTime } from '../control/model.js';
import { parseInput } from '../control/schema.js';
import { LayerFilterInput, PublishLayerVersionInput, parseLayerName, parseLayerVersionArn, parseVersionNumber } from '../control/layer-schema.js';
import { layerArn, layerVersionArn, type LayerVersionRecord } from '../control/layers.js';
import { treeBytes } from '../control/tree-size.js';
import type { ApiContext, ApiRequest, ApiResponse, Route } from './context.js';
import { route } from './context.js';
import { intParam, parseJson } from './http.js';
import { MAX_CODE_REQUEST, MAX_ZIP_BYTES, codeLinkSignature } from './functions.js';

/**
 * Lambda layers: PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn, ListLayers, ListLayerVersions,
 * DeleteLayerVersion, at Lambda's 2018-10-31 paths. Archives go through the code store like function code (same
 * zip checks, same signed download link); versions live in the layer registry.
 */

/** The layer name from a path parameter (a name or a layer ARN of this account and region). */
function layerName(ctx: ApiContext, raw: string): string {
  const ref = parseLayerName(raw);
  if (ref.account !== undefined && ref.account !== ACCOUNT_ID) throw new ThawError('AccessDenied', `User is not authorized to access layers of account ${ref.account}`);
  if (ref.region !== undefined && ref.region !== ctx.region) throw new ThawError('InvalidParameterValue', `Layer ARNs must be in region ${ctx.region}.`);
  return ref.name;
}

function filterOf(req: ApiRequest): { runtime?: string; architecture?: string } {
  const q = req.url.searchParams;
  const f = parseInput(LayerFilterInput, {
    ...(q.get('CompatibleRuntime') === null ? {} : { CompatibleRuntime: q.get('CompatibleRuntime') }),
    ...(q.get('CompatibleArchitecture') === null ? {} : { CompatibleArchitecture: q.get('CompatibleArchitecture') }),
  });
  return {
    ...(f.CompatibleRuntime === undefined ? {} : { runtime: f.CompatibleRuntime }),
    ...(f.CompatibleArchitecture === undefined ? {} : { architecture: f.CompatibleArchitecture }),
  };
}

/** A layer version as ListLayerVersions and ListLayers show it. */
function listItem(ctx: ApiContext, v: LayerVersionRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    LayerVersionArn: layerVersionArn(ctx.region, v.layerName, v.version),
    Version: v.version,
    Description: v.description,
    CreatedDate: lambdaTime(v.createdAt),
  };
  if (v.compatibleRuntimes.length > 0) out.CompatibleRuntimes = [...v.compatibleRuntimes];
  if (v.licenseInfo !== null) out.LicenseInfo = v.licenseInfo;
  if (v.compatibleArchitectures.length > 0) out.CompatibleArchitectures = [...v.compatibleArchitectures];
  return out;
}

/** A layer version as PublishLayerVersion and GetLayerVersion answer, with a download link valid for 10 minutes. */
function fullVersion(ctx: ApiContext, req: ApiRequest, v: LayerVersionRecord): Record<string, unknown> {
  const expires = Date.now() + 10 * 60 * 1000;
  const sig = codeLinkSignature(ctx.linkSecret, v.codeSha256, expires);
  return {
    Content: {
      Location: `${req.origin}/thaw/v1/code/${v.codeSha256}.zip?expires=${expires}&signature=${sig}`,
      CodeSha256: hexToBase64(v.codeSha256),
      CodeSize: v.codeSize,
    },
    LayerArn: layerArn(ctx.region, v.layerName),
    ...listItem(ctx, v),
  };
}

function decodeLayerZip(zipFile: string | undefined, s3Bucket: string | undefined): Buffer {
  if (zipFile === undefined) {
    if (s3Bucket !== undefined) throw new ThawError('InvalidParameterValue', 'Thaw accepts layer archives as ZipFile; S3Bucket/S3Key are not supported.');
    throw new ThawError('InvalidParameterValue', 'Please provide a source for the layer content (Content.ZipFile).');
  }
  const zip = Buffer.from(zipFile, 'base64');
  if (zip.length > MAX_ZIP_BYTES) throw new ThawError('RequestTooLarge', `Request must be smaller than ${MAX_CODE_REQUEST} bytes for the PublishLayerVersion operation`);
  if (zip.length === 0) throw new ThawError('InvalidZipFile', 'Could not unzip uploaded file. Please check your file, then try to upload again.');
  return zip;
}

async function publishLayerVersion(ctx: ApiContext, req: ApiRequest): Promise<ApiResponse> {
  const name = layerName(ctx, req.params.LayerName ?? '');
  const input = parseInput(PublishLayerVersionInput, parseJson(req.body));
  const code = await ctx.code.put(decodeLayerZip(input.Content.ZipFile, input.Content.S3Bucket));
  try {
    const unzippedSize = await treeBytes(await ctx.code.materialise(code.sha256));
    const v = ctx.layers.publish(name, {
      description: input.Description ?? '',
      licenseInfo: input.LicenseInfo ?? null,
      runtimes: input.CompatibleRuntimes ?? [],
      architectures: input.CompatibleArchitectures ?? [],
    }, { sha256: code.sha256, size: code.size, unzippedSize });
    return { status: 201, json: fullVersion(ctx, req, v) };
  } finally {
    ctx.code.release(code.sha256);
  }
}

function getLayerVersion(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const name = layerName(ctx, req.params.LayerName ?? '');
  return { status: 200, json: fullVersion(ctx, req, ctx.layers.mustGet(name, parseVersionNumber(req.params.VersionNumber ?? ''))) };
}

function getLayerVersionByArn(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const raw = req.url.searchParams.get('Arn') ?? '';
  const ref = parseLayerVersionArn(raw);
  if (ref === undefined) {
    throw new ThawError('Validation', `1 validation error detected: Value '${raw}' at 'arn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+`);
  }
  if (ref.account !== ACCOUNT_ID) throw new ThawError('AccessDenied', `User is not authorized to access layers of account ${ref.account}`);
  if (ref.region !== ctx.region) throw new ThawError('ResourceNotFound', 'The resource you requested does not exist.');
  return { status: 200, json: fullVersion(ctx, req, ctx.layers.mustGet(ref.name, ref.version)) };
}

/** GET /2018-10-31/layers is ListLayers, or GetLayerVersionByArn with ?find=LayerVersion. */
function listLayersOrFind(ctx: ApiContext, req: ApiRequest): ApiResponse {
  if (req.url.searchParams.get('find') === 'LayerVersion') return getLayerVersionByArn(ctx, req);
  const max = intParam(req.url.searchParams.get('MaxItems') ?? undefined, 'MaxItems', 1, 50) ?? 50;
  const page = ctx.layers.list(filterOf(req), req.url.searchParams.get('Marker') ?? undefined, max);
  return {
    status: 200,
    json: {
      Layers: page.items.map((v) => ({ LayerName: v.layerName, LayerArn: layerArn(ctx.region, v.layerName), LatestMatchingVersion: listItem(ctx, v) })),
      ...(page.next === undefined ? {} : { NextMarker: page.next }),
    },
  };
}

function listLayerVersions(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const name = layerName(ctx, req.params.LayerName ?? '');
  const max = intParam(req.url.searchParams.get('MaxItems') ?? undefined, 'MaxItems', 1, 50) ?? 50;
  const page = ctx.layers.listVersions(name, filterOf(req), req.url.searchParams.get('Marker') ?? undefined, max);
  return { status: 200, json: { LayerVersions: page.items.map((v) => listItem(ctx, v)), ...(page.next === undefined ? {} : { NextMarker: page.next }) } };
}

function deleteLayerVersion(ctx: ApiContext, req: ApiRequest): ApiResponse {
  const name = layerName(ctx, req.params.LayerName ?? '');
  ctx.layers.delete(name, parseVersionNumber(req.params.VersionNumber ?? ''));
  return { status: 204 };
}

const L = '/2018-10-31/layers/{LayerName}/versions';
export const layerRoutes: readonly Route[] = [
  route('GET', '/2018-10-31/layers', 'ListLayers', listLayersOrFind),
  route('POST', L, 'PublishLayerVersion', publishLayerVersion, MAX_CODE_REQUEST),
  route('GET', L, 'ListLayerVersions', listLayerVersions),
  route('GET', `${L}/{VersionNumber}`, 'GetLayerVersion', getLayerVersion),
  route('DELETE', `${L}/{VersionNumber}`, 'DeleteLayerVersion', deleteLayerVersion),
];
