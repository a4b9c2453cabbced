/**
 * `--intended-use STATEMENT` and `--diagnostic`: what a model written by `import-keras`, `train` or
 * `model seed` is for. Without them the manifest says research use, not diagnostic.
 */
import { Option } from 'commander';
import {
  type IntendedUse,
  MAX_INTENDED_USE_CHARS,
  parseIntendedUse,
  RESEARCH_USE,
} from '../../core/intended-use.js';
import { OptionValueError } from '../io.js';

/** The two options as commander parses them. */
export interface IntendedUseCliOptions {
  readonly intendedUse?: string;
  readonly diagnostic?: boolean;
}

/** `--intended-use STATEMENT`, for a command that writes a model folder. */
export function intendedUseOption(): Option {
  return new Option(
    '--intended-use <statement>',
    `one line written to the manifest's intendedUse (default: '${RESEARCH_USE.statement}')`,
  );
}

/** `--diagnostic`, for a command that writes a model folder. */
export function diagnosticOption(): Option {
  return new Option(
    '--diagnostic',
    'declare the model meant for diagnostic use (with --intended-use saying what it was validated for)',
  );
}

/** The manifest's intendedUse from the options: research use unless stated otherwise. */
export function intendedUseFromOptions(options: IntendedUseCliOptions): IntendedUse {
  if (options.diagnostic && options.intendedUse === undefined) {
    throw new OptionValueError(
      '--diagnostic needs --intended-use STATEMENT saying what the model is validated for',
    );
  }
  if (options.intendedUse === undefined) return RESEARCH_USE;
  try {
    return parseIntendedUse(
      { diagnostic: options.diagnostic === true, statement: options.intendedUse },
      '--intended-use',
    );
  } catch {
    throw new OptionValueError(
      `--intended-use must be one line of 1 to ${MAX_INTENDED_USE_CHARS} characters`,
    );
  }
}
