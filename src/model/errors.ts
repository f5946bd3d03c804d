/** Errors carry a stable `code` so the API, the CLI and tests can tell them apart without parsing text. */
export class SluiceError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'SluiceError';
    this.code = code;
  }
}

/** One invalid field, named by its path in the config document (`vips[0].reals[1].weight`). */
export interface Issue {
  path: string;
  message: string;
}

export class ValidationError extends SluiceError {
  readonly issues: Issue[];
  constructor(issues: Issue[]) {
    super('EINVAL', issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; '));
    this.name = 'ValidationError';
    this.issues = issues;
  }
}

/** Refused for a reason other than malformed input: duplicate, missing, over a limit. */
export class ConflictError extends SluiceError {
  constructor(code: 'EEXIST' | 'ENOENT' | 'ELIMIT', message: string) {
    super(code, message);
    this.name = 'ConflictError';
  }
}
