import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { checkId, validId, type ChunkInfo, type ChunkTier } from './tier.js';

export interface S3TierOptions {
  readonly bucket: string;
  /** Key prefix for chunks, e.g. "thaw/chunks/". */
  readonly prefix?: string;
  /** An S3-compatible endpoint (MinIO, Ceph, R2, ...); AWS's when absent. */
  readonly endpoint?: string;
  readonly region?: string;
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** Path-style addressing, which most S3-compatible servers need. Default: true when an endpoint is given. */
  readonly forcePathStyle?: boolean;
}

const notFound = (e: unknown): boolean => {
  const x = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return x.name === 'NoSuchKey' || x.name === 'NotFound' || x.$metadata?.httpStatusCode === 404;
};

/** Origin in an S3-compatible bucket: one object per chunk, `<prefix><id>`. A successful PUT is durable. */
export class S3Tier implements ChunkTier {
  readonly name = 's3';
  private readonly client: S3Client;
  private readonly prefix: string;

  constructor(private readonly o: S3TierOptions) {
    this.prefix = o.prefix ?? 'chunks/';
    this.client = new S3Client({
      region: o.region ?? 'us-east-1',
      ...(o.endpoint === undefined ? {} : { endpoint: o.endpoint }),
      ...(o.credentials === undefined ? {} : { credentials: o.credentials }),
      forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
    });
  }

  private key(id: string): string {
    return `${this.prefix}${id}`;
  }

  async get(id: string): Promise<Buffer | undefined> {
    if (!validId(id)) return undefined;
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.key(id) }));
      if (r.Body === undefined) return undefined;
      return Buffer.from(await r.Body.transformToByteArray());
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
  }

  async put(id: string, data: Buffer): Promise<void> {
    checkId(id);
    await this.client.send(new PutObjectCommand({ Bucket: this.o.bucket, Key: this.key(id), Body: data, ContentLength: data.length }));
  }

  async has(id: string): Promise<boolean> {
    if (!validId(id)) return false;
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.o.bucket, Key: this.key(id) }));
      return true;
    } catch (e) {
      if (notFound(e)) return false;
      throw e;
    }
  }

  async delete(id: string): Promise<void> {
    if (!validId(id)) return;
    await this.client.send(new DeleteObjectCommand({ Bucket: this.o.bucket, Key: this.key(id) }));
  }

  async *list(): AsyncIterable<ChunkInfo> {
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.o.bucket, Prefix: this.prefix, ...(token === undefined ? {} : { ContinuationToken: token }) }));
      for (const o of page.Contents ?? []) {
        const id = (o.Key ?? '').slice(this.prefix.length);
        if (validId(id)) yield { id, size: o.Size ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0 };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }
}
