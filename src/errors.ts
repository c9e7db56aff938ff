import { shown } from './text.js';

/**
 * A mistake the user can fix: bad flag, bad file, mismatched data. The CLI prints its
 * message as one line and exits 2. Anything else that escapes is an internal error (exit 1).
 * The message is kept printable here, not only by the CLI: it quotes strings from the user's
 * files (an opset domain of "\b\n" in a damaged model broke the one-line contract for library
 * callers, found by npm run fuzz).
 */
export class UserError extends Error {
  override name = 'UserError';
  constructor(message: string) {
    super(shown(message));
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

/** The conventional flag of an option: `includeDownsampling` → `--include-downsampling`. */
export function flagName(option: string): string {
  return `--${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * An option that cannot be used, stated in the option's own name (`k`, `blocks`), so studies
 * and the engine never speak in flags. Its message names each option by its conventional flag
 * (flagName); a command whose flags are named otherwise (`--delete` for `blocks`,
 * `--gradient-k` for a report's gradient `ks`) rewords it with `worded`.
 */
export class OptionError extends UserError {
  override name = 'OptionError';
  constructor(
    readonly option: string,
    private readonly say: (flag: (option: string) => string) => string,
  ) {
    super(say(flagName));
  }

  worded(flag: (option: string) => string): UserError {
    return new UserError(this.say(flag));
  }
}
