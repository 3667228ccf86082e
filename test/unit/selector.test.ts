import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchesSelector } from '../../api/selector.js';

test('LabelSelector semantics', () => {
  const labels = { app: 'web', 'example.com/tier': 'front' };
  assert.equal(matchesSelector({}, labels), true);
  assert.equal(matchesSelector({}, null), true);
  assert.equal(matchesSelector({ matchLabels: { app: 'web' } }, labels), true);
  assert.equal(matchesSelector({ matchLabels: { app: 'web' } }, null), false);
  assert.equal(matchesSelector({ matchLabels: { app: 'api' } }, labels), false);
  const expr = (operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist', values?: string[]) => ({
    matchExpressions: [{ key: 'example.com/tier', operator, ...(values ? { values } : {}) }],
  });
  assert.equal(matchesSelector(expr('In', ['front', 'back']), labels), true);
  assert.equal(matchesSelector(expr('In', ['back']), labels), false);
  assert.equal(matchesSelector(expr('NotIn', ['back']), labels), true);
  assert.equal(matchesSelector(expr('NotIn', ['front']), labels), false);
  assert.equal(matchesSelector(expr('NotIn', ['front']), {}), true);
  assert.equal(matchesSelector(expr('Exists'), labels), true);
  assert.equal(matchesSelector(expr('DoesNotExist'), labels), false);
  assert.equal(matchesSelector(expr('DoesNotExist'), { toString: 'x' }), true);
  assert.equal(matchesSelector({ matchLabels: { toString: 'x' } }, {}), false);
});
