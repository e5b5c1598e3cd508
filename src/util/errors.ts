/**
 * The error catalogue. Every error that crosses the API boundary is a ThawError with a stable `code`;
 * `type` and `status` are what Lambda sends for it, so AWS SDKs raise the matching exception class.
 * User errors are the caller's fault (4xx); system errors are ours (5xx) and never carry internals on the wire.
 */
export const ERRORS = {
  ResourceNotFound: { type: 'ResourceNotFoundException', status: 404, kind: 'user' },
  ResourceConflict: { type: 'ResourceConflictException', status: 409, kind: 'user' },
  ResourceInUse: { type: 'ResourceInUseException', status: 400, kind: 'user' },
  PreconditionFailed: { type: 'PreconditionFailedException', status: 412, kind: 'user' },
  InvalidParameterValue: { type: 'InvalidParameterValueException', status: 400, kind: 'user' },
  Validation: { type: 'ValidationException', status: 400, kind: 'user' },
  ServiceUnavailable: { type: 'ServiceException', status: 503, kind: 'system' },
  InvalidRequestContent: { type: 'InvalidRequestContentException', status: 400, kind: 'user' },
  UnsupportedMediaType: { type: 'UnsupportedMediaTypeException', status: 415, kind: 'user' },
  RequestTooLarge: { type: 'RequestTooLargeException', status: 413, kind: 'user' },
  TooManyRequests: { type: 'TooManyRequestsException', status: 429, kind: 'user' },
  ProvisionedConcurrencyConfigNotFound: { type: 'ProvisionedConcurrencyConfigNotFoundException', status: 404, kind: 'user' },
  InvalidZipFile: { type: 'InvalidZipFileException', status: 502, kind: 'user' },
  CodeStorageExceeded: { type: 'CodeStorageExceededException', status: 400, kind: 'user' },
  ResourceNotReady: { type: 'ResourceNotReadyException', status: 502, kind: 'user' },
  InvalidSignature: { type: 'InvalidSignatureException', status: 403, kind: 'user' },
  IncompleteSignature: { type: 'IncompleteSignatureException', status: 403, kind: 'user' },
  MissingAuthenticationToken: { type: 'MissingAuthenticationTokenException', status: 403, kind: 'user' },
  UnrecognizedClient: { type: 'UnrecognizedClientException', status: 403, kind: 'user' },
  AccessDenied: { type: 'AccessDeniedException', status: 403, kind: 'user' },
  UnknownOperation: { type: 'UnknownOperationException', status: 404, kind: 'user' },
  InvalidRuntime: { type: 'InvalidRuntimeException', status: 502, kind: 'system' },
  Service: { type: 'ServiceException', status: 500, kind: 'system' },
} as const satisfies Record<string, { type: string; status: number; kind: 'user' | 'system' }>;

export type ErrorCode = keyof typeof ERRORS;

export class ThawError extends Error {
  readonly code: ErrorCode;
  readonly fields: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, fields: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ThawError';
    this.code = code;
    this.fields = Object.freeze({ ...fields });
  }

  get type(): string {
    return ERRORS[this.code].type;
  }

  get status(): number {
    return ERRORS[this.code].status;
  }
}

export function isThawError(e: unknown): e is ThawError {
  return e instanceof ThawError;
}

export const notFound = (what: string): ThawError => new ThawError('ResourceNotFound', what);
export const invalidParam = (message: string): ThawError => new ThawError('InvalidParameterValue', message);
