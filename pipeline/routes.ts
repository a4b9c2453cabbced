/**
 * The pipeline's REST API, defined once: its routes, the header carrying a hospital's key and the
 * refusals' wording. The CDK stack builds API Gateway's resources and methods from {@link API_ROUTES},
 * the api Lambda dispatches on them, and the local API server matches paths against the same
 * resources. Plain data and one matcher: no AWS SDK or CDK imports.
 */

/** One route: an HTTP method on a resource template (`{id}` is a path parameter). */
export interface ApiRoute {
  /** What the api Lambda does for it. */
  readonly name: 'createStudy' | 'listStudies' | 'getStudy' | 'getReport';
  readonly method: 'GET' | 'POST';
  readonly resource: string;
  /** Whether API Gateway checks the JSON body's shape (the CreateStudy model) before the Lambda. */
  readonly validatesBody?: boolean;
}

/** The routes of the API, in the order API Gateway's resources are built. */
export const API_ROUTES = [
  { name: 'createStudy', method: 'POST', resource: '/studies', validatesBody: true },
  { name: 'listStudies', method: 'GET', resource: '/studies' },
  { name: 'getStudy', method: 'GET', resource: '/studies/{id}' },
  { name: 'getReport', method: 'GET', resource: '/studies/{id}/report' },
] as const satisfies readonly ApiRoute[];

/** The API's resource templates, each once (`/studies`, `/studies/{id}`, `/studies/{id}/report`). */
export const API_RESOURCES: readonly string[] = [...new Set(API_ROUTES.map((r) => r.resource))];

/** The route of a method on a resource template, or `undefined`. */
export function findApiRoute(method: string, resource: string): ApiRoute | undefined {
  const upper = method.toUpperCase();
  return API_ROUTES.find((r) => r.method === upper && r.resource === resource);
}

/** The header carrying a hospital's API key: the authorizer's identity source. */
export const API_KEY_HEADER = 'x-api-key';

/**
 * The bodies API Gateway answers with when the authorizer refuses (gateway responses UNAUTHORIZED
 * and ACCESS_DENIED, cdk/constructs/api.ts; the local API server answers the same). They are the
 * api Lambda's own messages for the same cases, so a client sees one wording wherever it is refused.
 */
export const REFUSAL_MESSAGES = {
  /** 401: no key, or an empty one. */
  missing: 'x-api-key header missing',
  /** 403: a key that is not stored. */
  unknown: 'API key not recognised',
} as const;

/** A resource template compiled for matching paths. */
export interface CompiledResource {
  readonly resource: string;
  readonly pattern: RegExp;
  readonly names: readonly string[];
}

/** Compile resource templates (`/studies/{id}`, `/files/{path+}`), the most literal first. */
export function compileResources(resources: readonly string[]): CompiledResource[] {
  return (
    [...resources]
      // More literal segments first, so `/studies/new` would beat `/studies/{id}`.
      .sort((a, b) => (a.match(/\{/g)?.length ?? 0) - (b.match(/\{/g)?.length ?? 0))
      .map(compileResource)
  );
}

function compileResource(resource: string): CompiledResource {
  const names: string[] = [];
  const source = resource
    .split('/')
    .map((segment) => {
      const greedy = /^\{(\w+)\+\}$/.exec(segment);
      if (greedy) {
        names.push(greedy[1]!);
        return '(.+)';
      }
      const param = /^\{(\w+)\}$/.exec(segment);
      if (param) {
        names.push(param[1]!);
        return '([^/]+)';
      }
      return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return { resource, pattern: new RegExp(`^${source}/?$`), names };
}

/** A path parameter URL-decoded, or as sent when it is not valid percent-encoding. */
export function decodePathParameter(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The resource a path matches and its decoded path parameters (`null` when it has none), or `undefined`. */
export function matchResource(
  resources: readonly CompiledResource[],
  path: string,
): { resource: string; pathParameters: Record<string, string> | null } | undefined {
  for (const compiled of resources) {
    const match = compiled.pattern.exec(path);
    if (!match) continue;
    if (compiled.names.length === 0) return { resource: compiled.resource, pathParameters: null };
    const pathParameters: Record<string, string> = {};
    compiled.names.forEach((name, i) => {
      pathParameters[name] = decodePathParameter(match[i + 1]!);
    });
    return { resource: compiled.resource, pathParameters };
  }
  return undefined;
}
