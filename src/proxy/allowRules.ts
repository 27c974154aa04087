/**
 * `UPSTREAM_[<NAME>_]ALLOW`: the methods and paths a proxied call may use, as `METHOD /path/pattern` rules.
 * A pattern is literal segments, `*` for exactly one segment and a final `**` for the rest of the path
 * (none, one or more segments). The method is a token (`GET`) or `*` for any.
 */
export interface AllowRule {
  /** Upper-cased, or `*`. */
  method: string;
  /** The pattern's segments after the leading "/": `['plants', '*']`. */
  segments: string[];
}

export const allowRulesExample = 'GET /plants/*, GET /species/**, POST /search';

// RFC 9110 §5.6.2 token, as a method is.
const methodToken = /^(?:\*|[!#$%&'*+\-.^_`|~0-9A-Za-z]+)$/;
// RFC 3986 pchar without "%" (patterns are written decoded) and without ";" (path parameters are never matched).
const literalSegment = /^[A-Za-z0-9\-._~!$&'()+,=:@]+$/;

/**
 * Parses the comma-separated rules, or answers what is wrong with the first bad one (with the example),
 * for the config's one line per problem.
 */
export function parseAllowRules(value: string): AllowRule[] | string {
  const rules: AllowRule[] = [];
  for (const text of value.split(',').map((part) => part.trim())) {
    const problem = (why: string) =>
      `rule "${text.slice(0, 80)}" ${why}; rules look like "${allowRulesExample}"`;
    if (text === '') return problem('is empty (a stray comma?)');
    const [method, path, ...rest] = text.split(/\s+/);
    if (method === undefined || path === undefined || rest.length > 0)
      return problem('must be a method, one space and a path');
    if (!methodToken.test(method)) return problem('has no valid method (GET, POST, ..., or * for any)');
    if (!path.startsWith('/')) return problem('must have a path starting with "/"');
    const segments = path.slice(1).split('/');
    for (const [index, segment] of segments.entries()) {
      const last = index === segments.length - 1;
      if (segment === '**' && !last) return problem('may use "**" only as its last segment');
      if (segment === '' && !last) return problem('may not hold an empty segment ("//")');
      if (segment === '.' || segment === '..') return problem('may not hold a dot segment');
      if (segment !== '' && segment !== '*' && segment !== '**' && !literalSegment.test(segment)) {
        return problem(
          `has "${segment.slice(0, 40)}", which is neither a plain segment (no "%", ";" or "*" in it), "*" nor "**"`,
        );
      }
    }
    rules.push({ method: method === '*' ? '*' : method.toUpperCase(), segments });
  }
  return rules;
}

/** Shows rules as they were configured, for `check-config` and error details. */
export function formatAllowRules(rules: readonly AllowRule[]): string {
  return rules.map((rule) => `${rule.method} /${rule.segments.join('/')}`).join(', ');
}
