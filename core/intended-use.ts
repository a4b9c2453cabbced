/**
 * What a model is for, as its manifest declares it (`intendedUse`), carried by every decision it
 * takes: `diagnose`, the status API, the report, the SNS notification. A decision looks the same
 * whatever model took it, so a demonstration or research model must say so where the decision is
 * read. A manifest that declares nothing counts as not for diagnostic use.
 */
import { InputError } from './errors.js';

/** A model's intended use. */
export interface IntendedUse {
  /** True only when whoever wrote the model states it is meant to support diagnosis. */
  readonly diagnostic: boolean;
  /** One line: what the model is for (and, when diagnostic, what it was validated on). */
  readonly statement: string;
}

/** The longest statement kept (a line, not a model card). */
export const MAX_INTENDED_USE_CHARS = 300;

/** The intended use of a model whose manifest declares none. */
export const UNDECLARED_INTENDED_USE: IntendedUse = {
  diagnostic: false,
  statement: 'no intended use declared: not for diagnostic use',
};

/** What `import-keras`, `train` and `model seed` write unless told otherwise. */
export const RESEARCH_USE: IntendedUse = {
  diagnostic: false,
  statement: 'research use only, not for diagnosis',
};

/** What a declared intended use must be, as every check of one says it. */
export const INTENDED_USE_EXPECTED = `intendedUse must be { diagnostic: true|false, statement: one line of 1 to ${MAX_INTENDED_USE_CHARS} characters }`;

/**
 * The one rule for a declared intended use (a model manifest, the votes message, the notification):
 * `diagnostic` a boolean, `statement` one non-blank line of at most {@link MAX_INTENDED_USE_CHARS}.
 */
export function isIntendedUse(value: unknown): value is IntendedUse {
  if (value === null || typeof value !== 'object') return false;
  const { diagnostic, statement } = value as Partial<Record<keyof IntendedUse, unknown>>;
  return (
    typeof diagnostic === 'boolean' &&
    typeof statement === 'string' &&
    statement.trim().length > 0 &&
    statement.length <= MAX_INTENDED_USE_CHARS &&
    !/[\r\n]/.test(statement)
  );
}

/** Check a declared intended use; `subject` names the file or field for the one-line error. */
export function parseIntendedUse(value: unknown, subject: string): IntendedUse {
  if (!isIntendedUse(value)) throw new InputError(subject, INTENDED_USE_EXPECTED);
  return { diagnostic: value.diagnostic, statement: value.statement };
}

/** A manifest's intended use: the declared one (checked), or {@link UNDECLARED_INTENDED_USE}. */
export function intendedUseOf(
  manifest: { readonly intendedUse?: unknown } | undefined,
  subject: string,
): IntendedUse {
  if (manifest?.intendedUse === undefined) return UNDECLARED_INTENDED_USE;
  return parseIntendedUse(manifest.intendedUse, subject);
}

/**
 * The intended use of a decision several models took part in (a model changed mid-study): diagnostic
 * only when every one of them is; otherwise the first non-diagnostic one's. `uses` most votes first.
 */
export function combinedIntendedUse(uses: readonly (IntendedUse | undefined)[]): IntendedUse {
  const declared = uses.map((use) => use ?? UNDECLARED_INTENDED_USE);
  return declared.find((use) => !use.diagnostic) ?? declared[0] ?? UNDECLARED_INTENDED_USE;
}

/** The one-line warning shown when a model not for diagnostic use decides. */
export function notDiagnosticWarning(modelId: string, use: IntendedUse): string {
  return `model ${modelId} is not for diagnostic use (${use.statement}): this decision is not a diagnosis`;
}
