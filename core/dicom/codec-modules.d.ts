// Types for the codec packages that ship none (or point `types` at a missing file). Only what
// core/dicom/codecs.ts uses is declared.

declare module '@cornerstonejs/codec-charls/decodewasmjs' {
  interface FrameInfo {
    width: number;
    height: number;
    bitsPerSample: number;
    componentCount: number;
  }
  interface JpegLSDecoder {
    getEncodedBuffer(length: number): Uint8Array;
    decode(): void;
    getFrameInfo(): FrameInfo;
    getDecodedBuffer(): Uint8Array;
    delete(): void;
  }
  interface CharLS {
    JpegLSDecoder: new () => JpegLSDecoder;
  }
  const factory: (options?: {
    print?: (s: string) => void;
    printErr?: (s: string) => void;
  }) => Promise<CharLS>;
  export default factory;
}

declare module '@cornerstonejs/codec-openjpeg/decodewasmjs' {
  interface FrameInfo {
    width: number;
    height: number;
    bitsPerSample: number;
    componentCount: number;
    isSigned: boolean;
  }
  interface J2KDecoder {
    getEncodedBuffer(length: number): Uint8Array;
    decode(): void;
    getFrameInfo(): FrameInfo;
    getDecodedBuffer(): Uint8Array;
    delete(): void;
  }
  interface OpenJpeg {
    J2KDecoder: new () => J2KDecoder;
  }
  const factory: (options?: {
    print?: (s: string) => void;
    printErr?: (s: string) => void;
  }) => Promise<OpenJpeg>;
  export default factory;
}

declare module 'jpeg-lossless-decoder-js' {
  export class Decoder {
    xDim: number;
    yDim: number;
    numComp: number;
    decode(
      buffer?: ArrayBuffer,
      offset?: number,
      length?: number,
      numBytes?: number,
    ): Uint8Array | Uint16Array;
  }
}
