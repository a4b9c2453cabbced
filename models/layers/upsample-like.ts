/**
 * `UpsampleLike`: the keras-retinanet layer the authors' FPN uses to bring a coarse feature map up to
 * the spatial size of a finer one. Registered under the class name `UpsampleLike`, so Keras model
 * configs that name it (the authors' published checkpoints) deserialize in tfjs-layers.
 */
import {
  image,
  type serialization,
  type Tensor,
  type Tensor4D,
  serialization as tfSerialization,
  tidy,
} from '@tensorflow/tfjs-core';
import { layers, type Shape } from '@tensorflow/tfjs-layers';

/** Constructor arguments of {@link UpsampleLike}: those of any tfjs layer (name, trainable, …). */
export type UpsampleLikeArgs = ConstructorParameters<typeof layers.Layer>[0];

/**
 * Resize `inputs[0]` (NHWC) to the height and width of `inputs[1]`, nearest neighbour.
 *
 * keras-retinanet calls `tf.compat.v1.image.resize_images(..., NEAREST_NEIGHBOR, align_corners=False)`,
 * which has no half-pixel centres: source index = floor(dst × in / out). tfjs's
 * `resizeNearestNeighbor(x, size, false, false)` computes the same thing.
 */
export class UpsampleLike extends layers.Layer {
  /** The name Keras configs use for this layer. */
  static readonly className = 'UpsampleLike';

  constructor(args?: UpsampleLikeArgs) {
    super(args ?? {});
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const shapes = inputShape as Shape[];
    const source = shapes[0];
    const target = shapes[1];
    if (!Array.isArray(source) || !Array.isArray(target) || source.length !== 4 || target.length !== 4) {
      throw new Error(
        `UpsampleLike '${this.name}': expects two rank-4 NHWC inputs, got ${JSON.stringify(inputShape)}`,
      );
    }
    return [source[0] ?? null, target[1] ?? null, target[2] ?? null, source[3] ?? null];
  }

  override call(inputs: Tensor | Tensor[]): Tensor {
    return tidy(() => {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      const source = list[0] as Tensor4D | undefined;
      const target = list[1];
      if (source === undefined || target === undefined) {
        throw new Error(`UpsampleLike '${this.name}': expects [source, target] inputs`);
      }
      const height = target.shape[1] as number;
      const width = target.shape[2] as number;
      // Same size (C5 → C4 is 16×16 → 16×16 in this model): the resize would be an identity copy.
      if (source.shape[1] === height && source.shape[2] === width) return source.clone();
      return image.resizeNearestNeighbor(source, [height, width], false, false);
    });
  }

  override getConfig(): serialization.ConfigDict {
    // No own hyper-parameters: the base config (name, trainable, dtype) is the whole of it, as in Keras.
    return { ...super.getConfig() };
  }
}

tfSerialization.registerClass(UpsampleLike);
