// Typed application errors; the HTTP layer maps them to responses in one place (http/errors.ts).

/** Stable error codes with the HTTP status each maps to. */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  BAD_VERSION: 400,
  BAD_PATH: 400,
  CHECKSUM_MISMATCH: 400,
  SIZE_MISMATCH: 400,
  BAD_BODY: 400,
  NOT_FOUND: 404,
  CLIENT_ABORTED: 499,
  INTERNAL: 500,
  LOCK_TIMEOUT: 503,
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'AppError';
    this.status = ERROR_STATUS[code];
  }
}

/** A blob that is not in the blob store. Raised by every BlobStore for a missing key. */
export class BlobNotFoundError extends Error {
  constructor(readonly key: string, options?: { cause?: unknown }) {
    super(`blob not found: ${key}`, options);
    this.name = 'BlobNotFoundError';
  }
}

/** A conditional create found the key already present. */
export class BlobExistsError extends Error {
  constructor(readonly key: string, options?: { cause?: unknown }) {
    super(`blob already exists: ${key}`, options);
    this.name = 'BlobExistsError';
  }
}

/** The blob store itself failed (network, permissions, disk). Never means "not found". */
export class BlobStoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlobStoreError';
  }
}
