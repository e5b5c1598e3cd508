import { z } from 'zod';
import { ThawError } from '../util/errors.js';

/**
 * The layer API's trust boundary: PublishLayerVersion's body, the query parameters of the list operations, and
 * the layer names and ARNs in paths and function configurations. Limits and patterns follow the Lambda API
 * reference; failures are Lambda's ValidationException (through parseInput, or worded as Lambda words them).
 */

/** Runtime identifiers Lambda accepts in CompatibleRuntimes (deprecated ones included, as Lambda does). */
export const LAMBDA_RUNTIMES = [
  'nodejs', 'nodejs4.3', 'nodejs6.10', 'nodejs8.10', 'nodejs10.x', 'nodejs12.x', 'nodejs14.x', 'nodejs16.x', 'nodejs18.x',
  'nodejs20.x', 'nodejs22.x', 'nodejs24.x', 'nodejs4.3-edge', 'java8', 'java8.al2', 'java11', 'java17', 'java21', 'java25',
  'python2.7', 'python3.6', 'python3.7', 'python3.8', 'python3.9', 'python3.10', 'python3.11', 'python3.12', 'python3.13',
  'python3.14', 'dotnetcore1.0', 'dotnetcore2.0', 'dotnetcore2.1', 'dotnetcore3.1', 'dotnet6', 'dotnet8', 'dotnet10', 'go1.x',
  'ruby2.5', 'ruby2.7', 'ruby3.2', 'ruby3.3', 'ruby3.4', 'provided', 'provided.al2', 'provided.al2023',
] as const;

export const ARCHITECTURES = ['x86_64', 'arm64'] as const;

const runtime = z.enum(LAMBDA_RUNTIMES, `Member must satisfy enum value set: [${LAMBDA_RUNTIMES.join(', ')}]`);
const architecture = z.enum(ARCHITECTURES, 'Member must satisfy enum value set: [x86_64, arm64]');
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'Member must be base64 encoded');

export const PublishLayerVersionInput = z.object({
  Content: z.object({
    ZipFile: base64.optional(),
    S3Bucket: z.string().optional(),
    S3Key: z.string().optional(),
    S3ObjectVersion: z.string().optional(),
  }).passthrough(),
  Description: z.string().max(256, 'Member must have length less than or equal to 256').optional(),
  LicenseInfo: z.string().max(512, 'Member must have length less than or equal to 512').optional(),
  CompatibleRuntimes: z.array(runtime).max(15, 'Member must have length less than or equal to 15').optional(),
  CompatibleArchitectures: z.array(architecture).max(2, 'Member must have length less than or equal to 2').optional(),
}).passthrough();
export type PublishLayerVersionInput = z.infer<typeof PublishLayerVersionInput>;

/** The optional filters of ListLayers and ListLayerVersions. */
export const LayerFilterInput = z.object({
  CompatibleRuntime: runtime.optional(),
  CompatibleArchitecture: architecture.optional(),
});

const LAYER_NAME = /^(?:arn:[a-zA-Z0-9-]+:lambda:([a-zA-Z0-9-]+):(\d{12}):layer:([a-zA-Z0-9_-]+)|([a-zA-Z0-9_-]+))$/;
const LAYER_NAME_PATTERN = '(arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+';
const LAYER_VERSION_ARN = /^arn:[a-zA-Z0-9-]+:lambda:([a-zA-Z0-9-]+):(\d{12}):layer:([a-zA-Z0-9_-]+):([0-9]+)$/;
export const LAYER_VERSION_ARN_PATTERN = 'arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{12}:layer:[a-zA-Z0-9-_]+:[0-9]+';

/** A layer named in a path: its name, or its ARN (region and account as written, for the caller to check). */
export interface LayerRef {
  readonly name: string;
  readonly region?: string;
  readonly account?: string;
}

export interface LayerVersionRef {
  readonly name: string;
  readonly region: string;
  readonly account: string;
  readonly version: number;
}

export function parseLayerName(raw: string): LayerRef {
  const m = raw.length <= 140 ? LAYER_NAME.exec(raw) : null;
  if (m === null) {
    const constraint = raw.length > 140 || raw.length === 0
      ? `Member must have length ${raw.length === 0 ? 'greater than or equal to 1' : 'less than or equal to 140'}`
      : `Member must satisfy regular expression pattern: ${LAYER_NAME_PATTERN}`;
    throw new ThawError('Validation', `1 validation error detected: Value '${raw}' at 'layerName' failed to satisfy constraint: ${constraint}`);
  }
  if (m[4] !== undefined) return { name: m[4] };
  return { name: m[3] as string, region: m[1] as string, account: m[2] as string };
}

/** A layer version ARN, or undefined when `raw` is not one. */
export function parseLayerVersionArn(raw: string): LayerVersionRef | undefined {
  const m = raw.length <= 140 ? LAYER_VERSION_ARN.exec(raw) : null;
  if (m === null) return undefined;
  const version = Number(m[4]);
  if (!Number.isSafeInteger(version)) return undefined;
  return { region: m[1] as string, account: m[2] as string, name: m[3] as string, version };
}

/** The VersionNumber path parameter. */
export function parseVersionNumber(raw: string): number {
  const n = /^[0-9]{1,15}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n)) {
    throw new ThawError('Validation', `1 validation error detected: Value '${raw}' at 'versionNumber' failed to satisfy constraint: Member must be a number`);
  }
  return n;
}
