// Kubernetes LabelSelector semantics: matchLabels and matchExpressions are ANDed; an empty selector
// matches everything.
import type { LabelSelector } from './policy.js';

export type Labels = Readonly<Record<string, string>> | null | undefined;

export function matchesSelector(selector: LabelSelector, labels: Labels): boolean {
  const has = (key: string): boolean => labels != null && Object.prototype.hasOwnProperty.call(labels, key);
  for (const [key, value] of Object.entries(selector.matchLabels ?? {}))
    if (!has(key) || labels![key] !== value) return false;
  for (const req of selector.matchExpressions ?? []) {
    const present = has(req.key);
    const value = present ? labels![req.key] : undefined;
    switch (req.operator) {
      case 'In':
        if (!present || !(req.values ?? []).includes(value!)) return false;
        break;
      case 'NotIn':
        if (present && (req.values ?? []).includes(value!)) return false;
        break;
      case 'Exists':
        if (!present) return false;
        break;
      case 'DoesNotExist':
        if (present) return false;
        break;
    }
  }
  return true;
}
