/**
 * Calls to the pipeline's HTTP API from the hospital side: JSON in and out, the hospital's key in
 * its header, non-2xx answers as one-line {@link ApiError}s.
 */
import { InputError } from '../core/errors.js';
import { API_KEY_HEADER } from './routes.js';

/** A failed API call: `<METHOD> <path>: <status> <the server's message>`, one line. */
export class ApiError extends InputError {
  override name = 'ApiError';
  constructor(
    /** `POST /studies`, `PUT <key>`. */
    request: string,
    readonly status: number,
    message: string,
  ) {
    super(request, `${status} ${message}`.trim());
  }
}

/** Where the API is and who is calling. */
export interface ApiTarget {
  /** Base URL, e.g. `http://127.0.0.1:4566` or the API Gateway stage URL. */
  readonly api: string;
  readonly key: string;
}

function url(target: ApiTarget, path: string): string {
  return `${target.api.replace(/\/+$/, '')}${path}`;
}

/** Call the API; JSON in and out; non-2xx responses become one-line {@link ApiError}s. */
export async function call<T>(target: ApiTarget, method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url(target, path), {
      method,
      headers: {
        [API_KEY_HEADER]: target.key,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch (error) {
    throw new InputError(
      `${method} ${url(target, path)}`,
      `cannot reach the API (${(error as Error).cause ?? (error as Error).message})`,
    );
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text.trim().split('\n')[0] ?? '';
    try {
      const parsed = JSON.parse(text) as { message?: unknown; error?: unknown };
      message = String(parsed.message ?? parsed.error ?? message);
    } catch {
      // Not JSON: keep the first line of the text.
    }
    throw new ApiError(`${method} ${path}`, res.status, message || res.statusText);
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new InputError(`${method} ${path}`, 'the response is not JSON');
  }
}
