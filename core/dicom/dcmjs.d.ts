// dcmjs 0.50 ships no types. Only what core/dicom/write-dataset.ts uses is declared.

declare module 'dcmjs' {
  /** One element of a denaturalized data set, keyed by its tag in hex ("00100010"). */
  interface DenaturalizedElement {
    vr: string;
    Value?: unknown[];
  }
  type DenaturalizedDataset = Record<string, DenaturalizedElement>;
  class WriteBufferStream {
    constructor(defaultSize: number, littleEndian: boolean);
    getBuffer(): ArrayBuffer;
  }
  class DicomDict {
    constructor(meta: DenaturalizedDataset);
    dict: DenaturalizedDataset;
    write(options?: { allowInvalidVRLength?: boolean }): ArrayBuffer;
  }
  const DicomMessage: {
    write(
      dataset: DenaturalizedDataset,
      stream: WriteBufferStream,
      transferSyntaxUid: string,
      options: { allowInvalidVRLength?: boolean },
    ): number;
  };
  const DicomMetaDictionary: {
    denaturalizeDataset(dataset: Record<string, unknown>): DenaturalizedDataset;
  };
  const dcmjs: {
    data: {
      WriteBufferStream: typeof WriteBufferStream;
      DicomDict: typeof DicomDict;
      DicomMessage: typeof DicomMessage;
      DicomMetaDictionary: typeof DicomMetaDictionary;
    };
    log: { setLevel(level: string): void };
  };
  export default dcmjs;
}
