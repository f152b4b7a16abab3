// Filetracker paths from request URLs: percent-decoded UTF-8, one leading '/' stripped,
// no '..' segments.
import { AppError } from '../errors.js';

/** Longest accepted path, in UTF-8 bytes (S3 keys and most file systems stop near here). */
export const MAX_PATH_BYTES = 4096;

/** Decodes the raw (still percent-encoded) remainder of a URL path into a file path. */
export function decodeFilePath(raw: string): string {
  const path = decodeDirPath(raw);
  if (path === '') throw new AppError('BAD_PATH', 'a file path is required');
  return path;
}

/**
 * Decodes a directory for listing: '' is the root; a trailing '/' is dropped.
 */
export function decodeDirPath(raw: string): string {
  let path: string;
  try {
    path = decodeURIComponent(raw);
  } catch {
    throw new AppError('BAD_PATH', 'path is not valid percent-encoded UTF-8');
  }
  if (path.startsWith('/')) path = path.slice(1);
  if (path.endsWith('/')) path = path.slice(0, -1);
  if (path === '') return '';
  if (path.includes('\0')) throw new AppError('BAD_PATH', 'path contains a NUL character');
  // '.' segments name the same file as without them, as on the Python server's disk.
  let segments = path.split('/');
  if (segments.includes('..')) throw new AppError('BAD_PATH', 'Path cannot contain "..".');
  if (segments.includes('.')) {
    segments = segments.filter((seg) => seg !== '.');
    path = segments.join('/');
    if (path === '') return '';
  }
  if (segments.includes('')) throw new AppError('BAD_PATH', 'path contains an empty segment ("//")');
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw new AppError('BAD_PATH', `path is longer than ${MAX_PATH_BYTES} bytes`);
  return path;
}
