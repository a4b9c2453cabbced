/**
 * Winograd 3×3 convolutions on tfjs-backend-wasm, for the compiled inference graph: stride 1,
 * channels a multiple of 4 in and 8 out, bias and optional ReLU fused. XNNPACK (tfjs's wasm kernels)
 * runs 3×3 convolutions directly, 9 multiply-adds per tap; F(4×4, 3×3) needs 36 per 16 outputs, 4×
 * fewer, at the price of input and output transforms that are linear in the feature map's size.
 *
 * Our SIMD module (generated per layer shape by wat.ts, assembled by wabt) imports the wasm
 * backend's memory: it reads the input tensor where tfjs keeps it and writes a tensor tfjs allocated,
 * so nothing is copied. It only runs on the wasm backend; elsewhere the caller keeps tfjs's conv.
 */
import { setFlagsFromString } from 'node:v8';
import { backend as currentBackend, engine, getBackend, type Tensor4D } from '@tensorflow/tfjs-core';
import { F4, PANEL, transformFilter, type WinogradMatrices } from './matrices.js';
import { type WinogradModuleSpec, winogradModuleText } from './wat.js';

/** Environment variable: `0`/`off` turns Winograd off (tfjs's direct convolution everywhere). */
export const WINOGRAD_ENV = 'COVIDCT_WINOGRAD';

/** A WebAssembly memory, as far as we use it. */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

/** The WebAssembly JS API we use: this project compiles without the DOM typings that declare it. */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

/** What we use of tfjs-backend-wasm's backend object (its typings do not export these usefully). */
interface WasmBackendLike {
  readonly wasm: {
    readonly asm: { readonly memory: WasmMemory };
    _malloc(bytes: number): number;
    _free(pointer: number): void;
  };
  readonly dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: 'float32'): { dataId: object; shape: number[]; dtype: 'float32' };
}

interface Exports {
  input(
    x: number,
    H: number,
    W: number,
    pt: number,
    pl: number,
    tilesW: number,
    tilesPerImage: number,
    t0: number,
    t1: number,
    v: number,
    tmp: number,
  ): void;
  gemm(v: number, u: number, mm: number, rows: number): void;
  output(
    mm: number,
    y: number,
    bias: number,
    OH: number,
    OW: number,
    tilesW: number,
    tilesPerImage: number,
    t0: number,
    t1: number,
    tmp: number,
  ): void;
}

/** wabt, loaded once by {@link prepareWinograd}; undefined until then (or when it failed). */
let assembler: { parseWat(name: string, text: string, features: object): WabtModule } | undefined;
interface WabtModule {
  toBinary(options: object): { buffer: Uint8Array };
  destroy(): void;
}
let preparing: Promise<boolean> | undefined;
let unavailableReason: string | undefined;

/** Why Winograd is off for good in this thread: the assembler did not load, or a module did not compile. */
export function winogradUnavailableReason(): string | undefined {
  return unavailableReason;
}

/** The one line logged when the Winograd kernels cannot run for `reason` (tfjs's convolutions run instead). */
export function winogradFallbackNotice(reason: string): string {
  return `covidct: Winograd kernels unavailable (${reason}); direct convolutions run`;
}

/** Whether `COVIDCT_WINOGRAD` turns the Winograd convolutions off. */
export function winogradDisabled(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env[WINOGRAD_ENV]?.trim().toLowerCase();
  return value === '0' || value === 'off' || value === 'false';
}

/**
 * Load the assembler (async, once per thread). Call after the wasm backend is set; until this
 * resolved true, {@link winogradAvailable} is false and compiled graphs use tfjs's convolutions.
 */
export function prepareWinograd(): Promise<boolean> {
  preparing ??= (async () => {
    if (winogradDisabled()) return false;
    try {
      const { default: init } = await import('wabt');
      assembler = await init();
      return true;
    } catch (error) {
      // Not fatal: tfjs's own convolutions are correct, only slower.
      unavailableReason = error instanceof Error ? error.message : String(error);
      return false;
    }
  })();
  return preparing;
}

/** True when a compiled graph built now may use Winograd convolutions (wasm backend, assembler loaded). */
export function winogradAvailable(): boolean {
  return (
    assembler !== undefined &&
    unavailableReason === undefined &&
    getBackend() === 'wasm' &&
    !winogradDisabled()
  );
}

/** Whether a conv of this shape is one we run: 3×3, stride and dilation 1, channels fitting the kernels. */
export function winogradApplies(
  kh: number,
  kw: number,
  strides: readonly [number, number],
  dilations: readonly [number, number],
  inC: number,
  outC: number,
): boolean {
  return (
    kh === 3 &&
    kw === 3 &&
    strides[0] === 1 &&
    strides[1] === 1 &&
    dilations[0] === 1 &&
    dilations[1] === 1 &&
    inC % 4 === 0 &&
    outC % PANEL === 0
  );
}

const modules = new Map<string, object>();

function compiledModule(spec: WinogradModuleSpec): object {
  const key = `${spec.f.m}/${spec.inC}/${spec.outC}/${spec.tiles}/${spec.relu}`;
  let module = modules.get(key);
  if (module === undefined) {
    if (assembler === undefined) throw new Error('prepareWinograd() has not finished');
    const wat = assembler.parseWat('winograd.wat', winogradModuleText(spec), {
      simd: true,
      bulk_memory: true,
    });
    // Straight to V8's optimising compiler: each function runs a few long calls per forward pass,
    // and V8 only swaps its baseline (Liftoff) code for optimised code between calls, so the first
    // passes would run at about half speed (measured: GEMM 17 vs 30 GFLOP/s).
    setFlagsFromString('--no-liftoff');
    try {
      module = new wasmApi.Module(wat.toBinary({}).buffer);
    } catch (error) {
      // A runtime without wasm SIMD or bulk memory: stop trying; tfjs's convolutions run instead.
      unavailableReason = error instanceof Error ? error.message : String(error);
      throw error;
    } finally {
      setFlagsFromString('--liftoff');
      wat.destroy();
    }
    modules.set(key, module);
  }
  return module;
}

/**
 * Tiles per chunk (the GEMMs' rows). 64 keeps a chunk's V and M in L2 for the wide-map layers and
 * in L3 for the deep ones; 32…128 measured within noise of each other, 16 or less starves the GEMM.
 */
const TILES_PER_CHUNK = 64;

/** Options of {@link WinogradConv2D}. */
export interface WinogradConvOptions {
  /** HWIO kernel, `[3][3][inC][outC]` flat (BatchNorm already folded in). */
  readonly filter: Float32Array;
  readonly bias: Float32Array;
  readonly inC: number;
  readonly outC: number;
  /** `[top, bottom, left, right]` zero padding. */
  readonly pads: readonly [number, number, number, number];
  readonly relu: boolean;
  /** @default F4 */
  readonly matrices?: WinogradMatrices;
}

/**
 * The scratch memory of one thread's Winograd layers (V, M and two border tiles): shared, since the
 * layers run one at a time, so a compiled ResNet50V2-FPN holds one chunk's worth (~9 MB) rather than
 * one per layer (~80 MB). Grown on demand; freed when the last layer using it is disposed.
 */
interface Scratch {
  pointer: number;
  bytes: number;
  users: number;
}
const scratches = new WeakMap<WasmBackendLike, Scratch>();

/**
 * One 3×3 convolution layer, ready to run: its module instance and the transformed filters and bias
 * in the wasm heap. {@link dispose} frees that heap memory.
 */
export class WinogradConv2D {
  readonly #backend: WasmBackendLike;
  readonly #exports: Exports;
  readonly #f: WinogradMatrices;
  readonly #tiles: number;
  readonly #outC: number;
  readonly #inC: number;
  readonly #pads: readonly [number, number, number, number];
  /** Heap pointers: packed filters and bias. */
  readonly #u: number;
  readonly #bias: number;
  /**
   * Where one chunk's parts lie in the shared scratch, in bytes from its start: V (`[n²][tiles][inC]`),
   * M (`[n²][tiles][outC]`), the input border tile (n²·inC), the output border tile (m²·outC); `bytes` in all.
   */
  readonly #layout: {
    readonly mm: number;
    readonly tmpIn: number;
    readonly tmpOut: number;
    readonly bytes: number;
  };
  readonly #scratch: Scratch;
  #disposed = false;

  constructor(options: WinogradConvOptions) {
    if (!winogradAvailable())
      throw new Error('Winograd convolutions need the wasm backend and prepareWinograd()');
    const { inC, outC, pads, relu } = options;
    const f = options.matrices ?? F4;
    this.#f = f;
    this.#inC = inC;
    this.#outC = outC;
    this.#pads = pads;
    this.#tiles = TILES_PER_CHUNK;
    this.#backend = currentBackend() as unknown as WasmBackendLike;
    const { wasm } = this.#backend;
    const spec: WinogradModuleSpec = { f, inC, outC, tiles: this.#tiles, relu };
    const instance = new wasmApi.Instance(compiledModule(spec), { env: { memory: wasm.asm.memory } });
    this.#exports = instance.exports as unknown as Exports;
    this.#u = this.#alloc(transformFilter(options.filter, inC, outC, f));
    this.#bias = this.#alloc(options.bias);
    const nk = f.n * f.n;
    const mm = 4 * nk * this.#tiles * inC;
    const tmpIn = mm + 4 * nk * this.#tiles * outC;
    const tmpOut = tmpIn + 4 * nk * inC;
    this.#layout = { mm, tmpIn, tmpOut, bytes: tmpOut + 4 * f.m * f.m * outC };
    let scratch = scratches.get(this.#backend);
    if (scratch === undefined) {
      scratch = { pointer: 0, bytes: 0, users: 0 };
      scratches.set(this.#backend, scratch);
    }
    scratch.users++;
    this.#scratch = scratch;
  }

  /** Copy `values` into freshly allocated heap memory. */
  #alloc(values: Float32Array): number {
    const { wasm } = this.#backend;
    const pointer = wasm._malloc(values.byteLength);
    // Views are taken after the malloc: it may have grown (and so detached) the memory's buffer.
    new Float32Array(wasm.asm.memory.buffer, pointer, values.length).set(values);
    return pointer;
  }

  /** The shared scratch, grown (and zeroed) to this layer's need. */
  #scratchPointer(): number {
    const scratch = this.#scratch;
    const { bytes } = this.#layout;
    if (scratch.bytes < bytes) {
      const { wasm } = this.#backend;
      if (scratch.pointer !== 0) wasm._free(scratch.pointer);
      scratch.pointer = wasm._malloc(bytes);
      scratch.bytes = bytes;
      new Uint8Array(wasm.asm.memory.buffer, scratch.pointer, scratch.bytes).fill(0);
    }
    return scratch.pointer;
  }

  /** The convolution of `x` (`[N, H, W, inC]`, float32 on the wasm backend): a new tensor the caller owns. */
  run(x: Tensor4D): Tensor4D {
    if (this.#disposed) throw new Error('WinogradConv2D used after dispose()');
    const [N, H, W, C] = x.shape;
    if (C !== this.#inC)
      throw new RangeError(`winograd conv: input has ${C} channels, expected ${this.#inC}`);
    const [pt, pb, pl, pr] = this.#pads;
    const OH = H + pt + pb - 2;
    const OW = W + pl + pr - 2;
    const { m } = this.#f;
    const tilesW = Math.ceil(OW / m);
    const tilesPerImage = Math.ceil(OH / m) * tilesW;
    const total = N * tilesPerImage;
    if (OH < 1 || OW < 1)
      throw new RangeError(`winograd conv: a ${H}×${W} input is smaller than the 3×3 kernel`);
    const xData = this.#backend.dataIdMap.get(x.dataId);
    if (xData === undefined || x.dtype !== 'float32')
      throw new Error('winograd conv: input is not a wasm float32 tensor');
    const out = this.#backend.makeOutput([N, OH, OW, this.#outC], 'float32');
    const y = this.#backend.dataIdMap.get(out.dataId)!.memoryOffset;
    const v = this.#scratchPointer();
    const mm = v + this.#layout.mm;
    const tmpIn = v + this.#layout.tmpIn;
    const tmpOut = v + this.#layout.tmpOut;
    const ex = this.#exports;
    for (let t0 = 0; t0 < total; t0 += this.#tiles) {
      const t1 = Math.min(total, t0 + this.#tiles);
      ex.input(xData.memoryOffset, H, W, pt, pl, tilesW, tilesPerImage, t0, t1, v, tmpIn);
      // Rows past t1 (up to the micro-kernel's 4) hold stale but finite values; their outputs are never read.
      ex.gemm(v, this.#u, mm, Math.ceil((t1 - t0) / 4) * 4);
      ex.output(mm, y, this.#bias, OH, OW, tilesW, tilesPerImage, t0, t1, tmpOut);
    }
    return engine().makeTensorFromTensorInfo(out) as Tensor4D;
  }

  /** Free the heap memory this layer holds. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const { wasm } = this.#backend;
    wasm._free(this.#u);
    wasm._free(this.#bias);
    const scratch = this.#scratch;
    if (--scratch.users === 0 && scratch.pointer !== 0) {
      wasm._free(scratch.pointer);
      scratch.pointer = 0;
      scratch.bytes = 0;
    }
  }
}
