/**
 * Named errors of covidct. Every error a user can act on is an {@link InputError}: its message is
 * one line that names the file or field and says what was expected, and the command line prints
 * it without a stack trace.
 */

/** Base class of every error covidct raises on purpose. */
export class CovidCtError extends Error {
  override name = 'CovidCtError';
}

/**
 * Bad input that the user can fix: an unreadable file, an unsupported format, a missing folder.
 * `subject` is the file, folder or field the message is about.
 */
export class InputError extends CovidCtError {
  override name = 'InputError';
  constructor(
    /** The file, folder or field at fault. */
    readonly subject: string,
    /** What is wrong and what was expected, without the subject. */
    readonly detail: string,
  ) {
    super(`${subject}: ${detail}`);
  }
}

/** The file is not a slice format covidct reads (neither TIFF nor DICOM, or empty). */
export class UnknownFormatError extends InputError {
  override name = 'UnknownFormatError';
}

/** The file is damaged: truncated, offsets outside the file, impossible tag lengths. */
export class CorruptFileError extends InputError {
  override name = 'CorruptFileError';
}

/** The file is readable but is not a single-frame grayscale CT slice (RGB, 8-bit, MR, …). */
export class NotCtSliceError extends InputError {
  override name = 'NotCtSliceError';
}

/** A DICOM file whose pixel data uses a transfer syntax covidct cannot decode. */
export class UnsupportedTransferSyntaxError extends InputError {
  override name = 'UnsupportedTransferSyntaxError';
}

/** A series that cannot be selected as a whole, for example because one of its slices is unreadable. */
export class SeriesError extends InputError {
  override name = 'SeriesError';
}

/** A CT slice declares burned-in annotation (0028,0301 = YES): its pixels may show who the patient is. */
export class BurnedInAnnotationError extends InputError {
  override name = 'BurnedInAnnotationError';
}

/** Options of {@link describeError}. */
export interface DescribeErrorOptions {
  /** Put an unexpected error's class name first (`TypeError: …`). @default true */
  readonly className?: boolean;
  /** Cut the line to at most this many characters (a library's message can be a whole dump). */
  readonly maxLength?: number;
}

/**
 * Format a caught value as one line for the user: an {@link InputError}'s message as it is, another
 * error's first line (with its class name unless `className` is false), anything else as a string.
 * The one place a thrown value becomes a reason; callers add their context around it.
 */
export function describeError(error: unknown, options: DescribeErrorOptions = {}): string {
  if (error instanceof InputError) return error.message;
  const text =
    error instanceof Error
      ? (options.className ?? true)
        ? `${error.name}: ${error.message}`
        : error.message
      : String(error);
  const line = text.split('\n')[0]!;
  return options.maxLength === undefined ? line : line.slice(0, options.maxLength);
}

/** A one-line error for a failed file-system call on `path`. */
export function fileSystemError(path: string, error: unknown): FileSystemError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const reasons: Record<string, string> = {
    ENOENT: 'no such file or folder',
    EACCES: 'permission denied',
    EISDIR: 'is a folder, expected a file',
    ENOTDIR: 'is a file, expected a folder',
  };
  return new FileSystemError(
    path,
    (code && reasons[code]) ?? `cannot be read (${code ?? String(error)})`,
    code,
  );
}

/**
 * The file system refused (no such file, permission, disk full, I/O error): about the machine, not
 * the content, so a long-running caller (the gateway) may try again where a bad file would not.
 */
export class FileSystemError extends InputError {
  override name = 'FileSystemError';
  constructor(
    subject: string,
    detail: string,
    /** The errno code (`ENOSPC`, `EIO`, …), when there was one. */
    readonly code?: string,
  ) {
    super(subject, detail);
  }
}
