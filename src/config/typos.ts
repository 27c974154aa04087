/**
 * Variables that are not settings but sit one or two keystrokes from one (`ALLOWED_ORIGIN`,
 * `UPSTREAM_CLIENTID`, `UPSTREAM_API_ULR`): left alone, the broker would run without them and the user
 * would see only "required", or nothing at all.
 */

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`, counted up to `limit + 1`. */
function distance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let before: number[] = [];
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, (previous[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, (before[j - 2] ?? 0) + 1);
      }
      current.push(best);
    }
    before = previous;
    previous = current;
  }
  return previous[b.length] ?? limit + 1;
}

/** Short names get little slack: `HOME` is not a typo of `HOST`. */
const slack = (name: string) => (name.length < 6 ? 0 : name.length < 10 ? 1 : 2);

/** The one of `known` that `word` is most likely a typo of, or undefined when none is close. */
export function meant(word: string, known: Iterable<string>): string | undefined {
  const limit = slack(word);
  let nearest: string | undefined;
  let nearestDistance = limit + 1;
  for (const name of known) {
    const d = distance(word, name, limit);
    if (d < nearestDistance) {
      nearest = name;
      nearestDistance = d;
    }
  }
  return nearest;
}

/** One line per set variable that is not in `known` but is within a typo of one of them. */
export function misspelledSettings(
  env: Record<string, string | undefined>,
  known: ReadonlySet<string>,
): string[] {
  return Object.entries(env).flatMap(([variable, value]) => {
    if (value === undefined || known.has(variable) || !/^[A-Z][A-Z0-9_]*$/.test(variable)) return [];
    const nearest = meant(variable, known);
    return nearest === undefined ? [] : [`${variable}: not a setting; did you mean ${nearest}?`];
  });
}
