/**
 * What a GPU instance is expected to do and cost: the per-slice time of the paper's model estimated
 * from its FLOPs and the GPU's datasheet throughput (an ESTIMATE: nothing here was measured on a
 * GPU; bench/GPU.md explains it and how to measure the real figure with `covidct bench classify`),
 * and the on-demand prices the surge simulation charges by default (assumptions, dated).
 */

/**
 * FLOPs of one 512×512 slice through ResNet50V2-FPN, forward pass, batch of one: counted by
 * `countFlops` (models/flops.ts) over the model `buildArchitecture('resnet50v2-fpn')` builds
 * (2 FLOP per multiply-add, bias, BatchNorm, ReLU, Add and pooling included; 99.6 % is the 61
 * convolutions). test/simulate.test.ts recounts it from the model.
 */
export const RESNET50V2_FPN_GFLOP_PER_SLICE = 40.97;

/**
 * Share of the GPU's FP32 peak the worker is assumed to reach: TensorFlow 2.9 (tfjs-node-gpu) FP32
 * convolutions through cuDNN, batches of 32 slices, no TensorRT, no mixed precision, a 70 W T4
 * that lowers its clock under sustained load. An assumption (bench/GPU.md gives the range).
 */
export const ASSUMED_GPU_EFFICIENCY = 0.3;

/** A GPU instance type the simulation knows. */
export interface GpuInstanceType {
  readonly gpu: string;
  /** FP32 peak of the one GPU, TFLOPS (NVIDIA datasheet). */
  readonly peakFp32Tflops: number;
  /** On-demand price, USD per hour, Linux, us-east-1 (assumption: see {@link PRICES_AS_OF}). */
  readonly onDemandUsdPerHour: number;
}

/** When the prices of {@link GPU_INSTANCE_TYPES} were taken: AWS's public on-demand price list, us-east-1. */
export const PRICES_AS_OF =
  '2025 (AWS on-demand price list, us-east-1, Linux); check the current price before relying on costs';

/** The GPU instance types the CDK stack is documented with (cdk/constructs/inference.ts). */
export const GPU_INSTANCE_TYPES: Readonly<Record<string, GpuInstanceType>> = {
  'g4dn.xlarge': { gpu: 'NVIDIA T4', peakFp32Tflops: 8.1, onDemandUsdPerHour: 0.526 },
  'g5.xlarge': { gpu: 'NVIDIA A10G', peakFp32Tflops: 31.2, onDemandUsdPerHour: 1.006 },
};

/**
 * Estimated slices per second of one worker task on an instance type (one GPU): peak FP32 ×
 * {@link ASSUMED_GPU_EFFICIENCY} ÷ {@link RESNET50V2_FPN_GFLOP_PER_SLICE}; undefined for a type
 * not in {@link GPU_INSTANCE_TYPES}.
 */
export function estimatedSlicesPerSecond(instanceType: string): number | undefined {
  const type = GPU_INSTANCE_TYPES[instanceType];
  if (type === undefined) return undefined;
  return (type.peakFp32Tflops * 1000 * ASSUMED_GPU_EFFICIENCY) / RESNET50V2_FPN_GFLOP_PER_SLICE;
}
