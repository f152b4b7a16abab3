// The one place where errors become HTTP responses: a short text body plus X-Exception, as
// the Python Filetracker server answers (its clients print that header).
import type { Context } from 'hono';
import { AppError } from '../errors.js';
import type { Logger } from '../log.js';

export function errorResponse(err: unknown, c: Context, log: Logger): Response {
  const appErr = toAppError(err);
  const status = appErr.status === 499 ? 400 : appErr.status;
  if (status >= 500) log.error({ err, method: c.req.method, path: c.req.path }, appErr.message);
  else log.info({ code: appErr.code, method: c.req.method, path: c.req.path }, appErr.message);
  const message = appErr.message.replace(/[\r\n]+/g, ' ');
  return new Response(`${message}\n`, {
    status,
    headers: { 'Content-Type': 'text/plain; charset=utf-8', 'X-Exception': headerSafe(message) },
  });
}

function toAppError(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  return new AppError('INTERNAL', `internal error: ${reason}`, { cause: err });
}

/** HTTP header values must be Latin-1 without control characters. */
function headerSafe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 1000);
}
