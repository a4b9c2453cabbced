/**
 * `startLocalStack` with the select Lambda's handler made in this process once the stack's clients
 * exist, over an observability the test reads (what select logged), and every handler error kept.
 */

import type { SqsEventHandler } from '../../local/event-source.js';
import { type LocalStack, type LocalStackOptions, startLocalStack } from '../../local/stack.js';
import type { Observability } from '../../pipeline/index.js';
import { collectStackErrors } from './stack-errors.js';

/** A started stack and the handler errors it reported (`where: message`, 500 characters at most). */
export interface SelectStack {
  readonly stack: LocalStack;
  readonly errors: string[];
}

/** Start the stack with `options` (its own select handler and error sink replace any given). */
export async function startStackWithSelect(
  options: Omit<LocalStackOptions, 'handlers' | 'onError'>,
  observability: Observability,
): Promise<SelectStack> {
  const errors: string[] = [];
  let select: SqsEventHandler | undefined;
  const stack = await startLocalStack({
    ...options,
    // Late-bound: the select handler needs the stack's clients and environment.
    handlers: {
      select: (event, context) => {
        if (!select) throw new Error('select handler not ready');
        return select(event, context);
      },
    },
    onError: collectStackErrors(errors, 500),
  });
  const m = await import('../../lambdas/select/handler.js');
  select = m.makeSelectHandler(
    stack.clients,
    m.selectConfigFromEnv({ ...process.env, ...stack.env }),
    observability,
  );
  return { stack, errors };
}
