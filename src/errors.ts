/**
 * A mistake the user can fix: bad flag, bad file, mismatched data. The CLI prints its
 * message as one line and exits 2. Anything else that escapes is an internal error (exit 1).
 */
export class UserError extends Error {
  override name = 'UserError';
  constructor(message: string) {
    super(message);
  }
}

/** Thrown when the user interrupts (SIGINT/SIGTERM): finished results are kept, exit 130. */
export class Interrupted extends Error {
  override name = 'Interrupted';
  constructor(message = 'interrupted') {
    super(message);
  }
}

export function isUserError(e: unknown): e is UserError {
  return e instanceof UserError;
}
