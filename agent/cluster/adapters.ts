// Maps the node's learner (agent/learner.ts) and enforcer (agent/enforcer.ts) onto the cluster agent's
// ports. Kept apart so the cluster logic builds and tests without BPF.
import type { Logger } from './agent.js';
import type { EnforcerPort, LearnerPort } from './agent.js';

export async function createNodePorts(
  _log: Logger,
): Promise<{ learner?: LearnerPort; enforcer?: EnforcerPort; close: () => Promise<void> }> {
  throw new Error('the learner and enforcer are not part of this build yet');
}
