/**
 * The control plane's internal shapes (compiled from API input: base units, defaults applied, frozen) and
 * their rendering as Lambda API output.
 */
import { functionArn } from './arn.js';

export type VersionState = 'Pending' | 'Active' | 'Inactive' | 'Failed';
export type LastUpdateStatus = 'Successful' | 'Failed' | 'InProgress';

export interface FunctionConfig {
  readonly runtime: string | null;
  readonly handler: string | null;
  readonly role: string;
  readonly description: string;
  readonly timeoutSec: number;
  readonly memoryMb: number;
  readonly env: Readonly<Record<string, string>>;
  readonly ephemeralMb: number;
  readonly snapStart: 'PublishedVersions' | 'None';
  readonly architecture: 'x86_64' | 'arm64';
  readonly layers: readonly string[];
  /** DeadLetterConfig.TargetArn: a function that receives events given up on. */
  readonly deadLetterTarget?: string;
}

export interface VersionRecord {
  readonly functionName: string;
  /** '$LATEST' or a published version number. */
  readonly version: string;
  readonly config: FunctionConfig;
  /** Hex SHA-256 of the deployment package. */
  readonly codeSha256: string;
  readonly codeSize: number;
  readonly state: VersionState;
  readonly stateReason: string | null;
  readonly stateReasonCode: string | null;
  readonly lastUpdateStatus: LastUpdateStatus;
  readonly lastUpdateReason: string | null;
  readonly lastUpdateReasonCode: string | null;
  readonly revisionId: string;
  readonly lastModified: number;
}

export interface AliasRecord {
  readonly functionName: string;
  readonly name: string;
  readonly functionVersion: string;
  readonly description: string;
  /** Additional version → weight (0..1). */
  readonly weights: Readonly<Record<string, number>> | null;
  readonly revisionId: string;
}

export interface FunctionUrlRecord {
  readonly functionName: string;
  /** '' for the unqualified function, else an alias name. */
  readonly qualifier: string;
  readonly urlId: string;
  readonly authType: 'NONE' | 'AWS_IAM';
  readonly cors: Readonly<Record<string, unknown>> | null;
  readonly invokeMode: 'BUFFERED' | 'RESPONSE_STREAM';
  readonly createdAt: number;
  readonly lastModified: number;
}

export const DEFAULTS = {
  timeoutSec: 3,
  memoryMb: 128,
  ephemeralMb: 512,
} as const;

/** Lambda's timestamp format: 2019-08-14T22:26:11.234+0000 */
export const lambdaTime = (ms: number): string => new Date(ms).toISOString().replace('Z', '+0000');

export const hexToBase64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64');

/** `layerCodeSize` gives the archive size of a layer version named in Layers (unknown ones show 0). */
export function renderConfiguration(v: VersionRecord, region: string, layerCodeSize: (arn: string) => number | undefined = () => undefined): Record<string, unknown> {
  const c = v.config;
  const out: Record<string, unknown> = {
    FunctionName: v.functionName,
    FunctionArn: functionArn(region, v.functionName, v.version === '$LATEST' ? undefined : v.version),
    Runtime: c.runtime ?? undefined,
    Role: c.role,
    Handler: c.handler ?? undefined,
    CodeSize: v.codeSize,
    Description: c.description,
    Timeout: c.timeoutSec,
    MemorySize: c.memoryMb,
    LastModified: lambdaTime(v.lastModified),
    CodeSha256: hexToBase64(v.codeSha256),
    Version: v.version,
    TracingConfig: { Mode: 'PassThrough' },
    RevisionId: v.revisionId,
    State: v.state,
    LastUpdateStatus: v.lastUpdateStatus,
    PackageType: 'Zip',
    Architectures: [c.architecture],
    EphemeralStorage: { Size: c.ephemeralMb },
    SnapStart: {
      ApplyOn: c.snapStart,
      OptimizationStatus: c.snapStart === 'PublishedVersions' && v.version !== '$LATEST' ? 'On' : 'Off',
    },
    LoggingConfig: { LogFormat: 'Text', LogGroup: `/aws/lambda/${v.functionName}` },
  };
  if (Object.keys(c.env).length > 0) out.Environment = { Variables: { ...c.env } };
  if (c.deadLetterTarget !== undefined) out.DeadLetterConfig = { TargetArn: c.deadLetterTarget };
  if (c.layers.length > 0) out.Layers = c.layers.map((arn) => ({ Arn: arn, CodeSize: layerCodeSize(arn) ?? 0 }));
  if (v.stateReason !== null) out.StateReason = v.stateReason;
  if (v.stateReasonCode !== null) out.StateReasonCode = v.stateReasonCode;
  if (v.lastUpdateReason !== null) out.LastUpdateStatusReason = v.lastUpdateReason;
  if (v.lastUpdateReasonCode !== null) out.LastUpdateStatusReasonCode = v.lastUpdateReasonCode;
  return out;
}

export function renderAlias(a: AliasRecord, region: string): Record<string, unknown> {
  const out: Record<string, unknown> = {
    AliasArn: functionArn(region, a.functionName, a.name),
    Name: a.name,
    FunctionVersion: a.functionVersion,
    Description: a.description,
    RevisionId: a.revisionId,
  };
  if (a.weights !== null) out.RoutingConfig = { AdditionalVersionWeights: { ...a.weights } };
  return out;
}
