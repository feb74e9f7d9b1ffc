// Keyset pagination as the request log gives it: each page names the next (older) one by a
// cursor, so "newer" means going back along the cursors already seen.

export interface CursorState {
  /** The cursor of each page seen so far; the first page has none. */
  stack: (string | null)[];
  index: number;
}

export const FIRST: CursorState = { stack: [null], index: 0 };

export function current(state: CursorState): string | null {
  return state.stack[state.index];
}

export function older(state: CursorState, nextCursor: string | null): CursorState {
  if (!nextCursor) return state;
  const stack = state.stack.slice(0, state.index + 1);
  stack.push(nextCursor);
  return { stack, index: state.index + 1 };
}

export function newer(state: CursorState): CursorState {
  return state.index === 0 ? state : { stack: state.stack, index: state.index - 1 };
}
