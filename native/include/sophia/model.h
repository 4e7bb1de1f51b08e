// The embedded vision-language model: configuration, parameter layout, and the batch, sampling
// and optimizer argument structs shared by the backends. Nothing here includes N-API.
//
// Vision: image [C, S, S] → P×P patches → linear patch embedding + learned 2-D position
// embedding → k bidirectional blocks → RMSNorm → linear projector = the visual tokens, which
// stand at the positions of the `<image>` tokens (one per patch) in the text sequence.
// Decoder (LLaMA-style): token embedding, L blocks of RMSNorm → causal attention with rotary
// positions (grouped-query when kvHeads < heads) → RMSNorm → SwiGLU MLP, each with a residual;
// a final RMSNorm, then the LM head (tied to the embedding, optionally) or the reward head.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common.h"

namespace sophia::model {

struct Config {
  int64_t vocab = 104;
  int64_t dim = 192;
  int64_t layers = 4;
  int64_t heads = 6;
  int64_t kvHeads = 2;
  int64_t ffn = 512;
  int64_t context = 256;
  int64_t imageSize = 32;  // 0: a text-only model
  int64_t channels = 3;
  int64_t patch = 8;
  int64_t visionLayers = 2;
  int64_t visionHeads = 6;
  int64_t visionFfn = 512;
  bool tieEmbeddings = true;
  // A scalar score in [0, 1] read from each sequence's last token instead of the LM head.
  bool rewardHead = false;
  float ropeTheta = 10000.f;
  float normEps = 1e-5f;
  int32_t imageToken = 3;

  int64_t headDim() const { return dim / heads; }
  int64_t kvDim() const { return kvHeads * headDim(); }
  int64_t patchesPerSide() const { return imageSize > 0 ? imageSize / patch : 0; }
  int64_t visualTokens() const { return patchesPerSide() * patchesPerSide(); }
  int64_t patchDim() const { return channels * patch * patch; }
};

// Throws Error("E_CONFIG", ...) naming the field when the configuration is unusable.
void validate(const Config& c);

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in floats, into the parameter buffer
  int64_t size = 0;
  bool decay = false;  // AdamW weight decay applies (matrices; not norms, biases, positions)
};

std::vector<TensorInfo> layout(const Config& c);

// The initial parameters of a model of config c (every backend starts from these, bit for bit):
// N(0, 0.02) matrices and embeddings, residual projections scaled by 1/sqrt(2·layers), norms 1,
// biases and the reward head 0; params holds the layout's size.
void init_params(const Config& c, uint64_t seed, float* params);

// What a training batch needs, in bytes, before anything is allocated.
struct MemoryPlan {
  int64_t params = 0, grads = 0, optimizer = 0, activations = 0, attention = 0, scratch = 0;
  int64_t total() const { return params + grads + optimizer + activations + attention + scratch; }
};
// tokens: packed rows; rows: logits rows (LM) or sequences (reward head); images: distinct images;
// probFloats: Σ over sequences of heads · len² (decoder) plus the vision blocks' share.
MemoryPlan plan_training(const Config& c, int64_t tokens, int64_t rows, int64_t images, int64_t seqSquares);
// The KV cache and decode buffers of generate() for `streams` samples.
int64_t plan_generate_bytes(const Config& c, int64_t promptTokens, int64_t prompts, int64_t images, int64_t streams);

// Packed sequences: sequence b owns rows seq[b] .. seq[b+1]-1. Sequence b with imageOf[b] >= 0
// holds exactly visualTokens() `<image>` tokens, which take image imageOf[b]'s visual tokens in
// order (G sequences of one prompt share one image and its vision pass).
struct Batch {
  int64_t N = 0, B = 0;
  const int32_t* tokens = nullptr;  // [N]
  const int32_t* seq = nullptr;     // [B + 1]
  int64_t images = 0;
  const float* pixels = nullptr;     // [images, C, S, S], values in [0, 1]
  const int32_t* imageOf = nullptr;  // [B], -1 = none (null: no images)
  // LM head: logits for these rows (row r predicts the token at r + 1), strictly increasing.
  int64_t M = 0;
  const int32_t* rows = nullptr;  // [M]
};

struct AdamW {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weightDecay = 0.f;
  float clipNorm = 0.f;  // 0: no clipping
};
struct StepResult {
  double gradNorm = 0.0;  // before clipping
  float clipScale = 1.f;
  bool skipped = false;  // a non-finite gradient: nothing was updated
};

struct Generate {
  int64_t P = 0;                        // prompts
  const int32_t* prompt = nullptr;      // packed prompt tokens
  const int32_t* promptSeq = nullptr;   // [P + 1]
  int64_t images = 0;
  const float* pixels = nullptr;
  const int32_t* imageOf = nullptr;     // [P]
  int64_t G = 1;                        // samples per prompt: stream s = p·G + g
  int64_t maxNew = 64;
  float temperature = 1.f;              // 0: greedy
  int64_t topK = 0;                     // 0: off
  float topP = 1.f;                     // 1: off
  uint64_t seed = 0;
  int32_t eos = 1;
  int32_t* outTokens = nullptr;  // [P·G, maxNew], pad (0) after the end
  float* outLogp = nullptr;      // [P·G, maxNew]: log-prob of each sampled token under the temperature-scaled distribution
  int32_t* outLen = nullptr;     // [P·G]
};

}  // namespace sophia::model
