import type { BrokerClientError } from './errors.js';
import type { BrokerClientEvent, TokenInfo, TokenReason } from './types.js';

/** setTimeout stores its delay as a signed 32-bit integer; a longer delay would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface TokenHolderOptions {
  request: () => Promise<TokenInfo>;
  now: () => number;
  autoRefresh: boolean;
  emit: (event: BrokerClientEvent) => void;
}

/** The one token of a client, in memory only, with its background renewal. */
export interface TokenHolder {
  /** A token the broker still accepts, or a new one. */
  usable(reasonWhenMissing: TokenReason): Promise<TokenInfo>;
  /** One token request in flight however many callers wait (single flight). */
  obtain(reason: TokenReason): Promise<TokenInfo>;
  /** Forgets a refused token, unless a concurrent call has already replaced it. */
  drop(token: string): void;
  /** Drops the token, stops renewal and ignores an answer still on its way. */
  clear(): void;
  current(): TokenInfo | undefined;
}

export function createTokenHolder({ request, now, autoRefresh, emit }: TokenHolderOptions): TokenHolder {
  let current: TokenInfo | undefined;
  let pending: Promise<TokenInfo> | undefined;
  /** Bumped by clear(), so an answer to a request sent before it is not stored. */
  let generation = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  function cancelTimer(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  }

  /** Renews before the next call needs the token, so calls rarely wait on the token endpoint. */
  function schedule(): void {
    cancelTimer();
    if (!autoRefresh || !current) return;
    const target = current;
    const delay = Math.min(Math.max(target.renewAt - now(), 0), MAX_TIMER_MS);
    timer = setTimeout(() => {
      timer = undefined;
      if (current !== target) return;
      // A failed background renewal is not retried here; the next call tries again.
      obtain('renewal').catch((error: unknown) => emit({ type: 'error', error: error as BrokerClientError }));
    }, delay);
    // In Node, a pending renewal alone must not keep the process alive.
    const handle = timer as { unref?: unknown } | number;
    if (typeof handle === 'object' && typeof handle.unref === 'function') handle.unref();
  }

  function obtain(reason: TokenReason): Promise<TokenInfo> {
    if (pending) return pending;
    const started = generation;
    const fly = async (): Promise<TokenInfo> => {
      try {
        const info = await request();
        if (started === generation) {
          current = info;
          schedule();
          emit({ type: 'token', reason, info });
        }
        return info;
      } finally {
        if (pending === flight) pending = undefined;
      }
    };
    const flight = fly();
    pending = flight;
    return flight;
  }

  async function usable(reasonWhenMissing: TokenReason): Promise<TokenInfo> {
    if (current && now() < current.renewAt) return current;
    const stale = current;
    try {
      return await obtain(stale ? 'renewal' : reasonWhenMissing);
    } catch (error) {
      // While the token endpoint fails, a token that has not expired yet is still worth using.
      if (stale && current === stale && now() < stale.expiresAt) return stale;
      throw error;
    }
  }

  return {
    usable,
    obtain,
    drop(token) {
      if (current?.token !== token) return;
      current = undefined;
      cancelTimer();
    },
    clear() {
      generation += 1;
      pending = undefined;
      cancelTimer();
      if (current === undefined) return;
      current = undefined;
      emit({ type: 'cleared' });
    },
    current: () => current,
  };
}
