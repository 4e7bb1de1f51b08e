// The embedded vision-language model on the GPU (model.cuh): the same forward, backward, AdamW
// and sampling as native/cpu/model.cpp, step for step, with the layers of nn.cu. The batch's index
// arrays are checked and prepared on the host and uploaded in one copy per forward; gathers and
// scatters of rows run in a fixed order, so gradients are reproducible bit for bit.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <utility>

#include "sophia/sampling.h"
#include "check.cuh"
#include "model.cuh"
#include "nn.cuh"
#include "sophia/cuda.h"

namespace sophia::cuda {

using namespace sophia::model;

DeviceMemory::~DeviceMemory() { release(); }

void DeviceMemory::reserve(int64_t bytes) {
  if (bytes <= bytes_) return;
  release();
  p_ = alloc(bytes);
  bytes_ = bytes;
}

void DeviceMemory::release() {
  cuda::release(p_);
  p_ = nullptr;
  bytes_ = 0;
}

namespace {

constexpr int64_t kWorkFloats = int64_t(1) << 22;  // 16 MiB: split-K partials and column-sum chunks
constexpr int64_t kNormChunk = int64_t(1) << 16;   // the CPU's gradient-norm chunk

Exec exec_of(const DeviceMemory& work) { return Exec{nullptr, static_cast<float*>(work.data()), work.bytes() / 4}; }

unsigned grid_for(int64_t n, int threads) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 1 << 20)));
}
void check_launch() { SOPHIA_CUDA_CHECK(cudaGetLastError()); }
void copy_d2d(float* dst, const float* src, int64_t n) {
  if (n > 0) SOPHIA_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * 4, cudaMemcpyDeviceToDevice, nullptr));
}
void zero(float* p, int64_t n) {
  if (n > 0) SOPHIA_CUDA_CHECK(cudaMemsetAsync(p, 0, size_t(n) * 4, nullptr));
}

// Host arrays packed into one buffer and uploaded with one copy.
class Upload {
 public:
  template <class T> int64_t add(const std::vector<T>& v) {
    const size_t off = (buf_.size() + 15) & ~size_t(15);
    buf_.resize(off + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(buf_.data() + off, v.data(), v.size() * sizeof(T));
    return int64_t(off);
  }
  void commit(DeviceMemory& mem) {
    mem.reserve(std::max<int64_t>(16, int64_t(buf_.size())));
    base_ = static_cast<unsigned char*>(mem.data());
    if (!buf_.empty()) SOPHIA_CUDA_CHECK(cudaMemcpy(base_, buf_.data(), buf_.size(), cudaMemcpyHostToDevice));
  }
  template <class T> const T* at(int64_t off) const { return reinterpret_cast<const T*>(base_ + off); }

 private:
  std::vector<unsigned char> buf_;
  unsigned char* base_ = nullptr;
};

// ---- model kernels (shapes in the comments; every loop is grid-stride with 64-bit indices) ----

#define SOPHIA_GRID_LOOP(e, total) \
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < (total); e += int64_t(gridDim.x) * blockDim.x)

// visEmb[NV, d] += pos[(r mod np), d]
__global__ void add_pos_kernel(float* visEmb, const float* __restrict__ pos, int64_t NV, int64_t np, int64_t d) {
  SOPHIA_GRID_LOOP(e, NV * d) {
    const int64_t r = e / d, j = e % d;
    visEmb[e] += pos[(r % np) * d + j];
  }
}

// x0[N, d]: the visual token imgRow[n] where set, else the embedding of tokens[n]
__global__ void embed_kernel(float* x0, const float* __restrict__ emb, const float* __restrict__ visTok,
                             const int32_t* __restrict__ tokens, const int32_t* __restrict__ imgRow, int64_t N, int64_t d) {
  SOPHIA_GRID_LOOP(e, N * d) {
    const int64_t n = e / d, j = e % d;
    x0[e] = imgRow[n] >= 0 ? visTok[int64_t(imgRow[n]) * d + j] : emb[int64_t(tokens[n]) * d + j];
  }
}

// dst[R, d] = src[idx[r], d]
__global__ void gather_rows_kernel(float* dst, const float* __restrict__ src, const int32_t* __restrict__ idx, int64_t R, int64_t d) {
  SOPHIA_GRID_LOOP(e, R * d) dst[e] = src[int64_t(idx[e / d]) * d + e % d];
}

// dst[idx[r], d] += src[r, d]; idx strictly increasing, so each row has one writer
__global__ void scatter_add_rows_kernel(float* dst, const float* __restrict__ src, const int32_t* __restrict__ idx, int64_t R,
                                        int64_t d) {
  SOPHIA_GRID_LOOP(e, R * d) dst[int64_t(idx[e / d]) * d + e % d] += src[e];
}

// dst[target[t], d] += src[order[k], d] for k in start[t] .. start[t+1]-1, in that order
__global__ void segment_add_kernel(float* dst, const float* __restrict__ src, const int32_t* __restrict__ target,
                                   const int32_t* __restrict__ start, const int32_t* __restrict__ order, int64_t T, int64_t d) {
  SOPHIA_GRID_LOOP(e, T * d) {
    const int64_t t = e / d, j = e % d;
    float* p = dst + int64_t(target[t]) * d + j;
    float v = *p;
    for (int32_t k = start[t]; k < start[t + 1]; ++k) v += src[int64_t(order[k]) * d + j];
    *p = v;
  }
}

// gpos[np, d] += Σ_i dvx[i·np + p, d], images in order
__global__ void pos_grad_kernel(float* gpos, const float* __restrict__ dvx, int64_t images, int64_t np, int64_t d) {
  SOPHIA_GRID_LOOP(e, np * d) {
    float v = gpos[e];
    for (int64_t i = 0; i < images; ++i) v += dvx[i * np * d + e];
    gpos[e] = v;
  }
}

// One warp per row: z = b + w · selNorm[r] in double; out = sigmoid(z)
__global__ void score_forward_kernel(float* out, float* scoreLogits, const float* __restrict__ selNorm, const float* __restrict__ sw,
                                     const float* __restrict__ sb, int64_t R, int64_t d) {
  const int lane = threadIdx.x % 32;
  const int64_t r = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  if (r >= R) return;
  double z = 0.0;
  for (int64_t j = lane; j < d; j += 32) z += double(sw[j]) * selNorm[r * d + j];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) z += __shfl_xor_sync(0xffffffffu, z, off);
  z += double(sb[0]);
  if (lane == 0) {
    if (scoreLogits) scoreLogits[r] = float(z);
    out[r] = float(1.0 / (1.0 + exp(-z)));
  }
}

// logits[r, tok] = -inf for every row: the LM head never predicts <image> (model.cpp)
__global__ void mask_column_kernel(float* logits, int64_t R, int64_t V, int64_t tok) {
  SOPHIA_GRID_LOOP(r, R) logits[r * V + tok] = -INFINITY;
}

// dselN[R, d] = dout[r] · w
__global__ void score_dsel_kernel(float* dselN, const float* __restrict__ dout, const float* __restrict__ sw, int64_t R, int64_t d) {
  SOPHIA_GRID_LOOP(e, R * d) dselN[e] = dout[e / d] * sw[e % d];
}

// gw[j] += Σ_r dout[r] · selNorm[r, j] (rows in order); thread d adds Σ_r dout[r] (double) to gb
__global__ void score_param_grad_kernel(float* gw, float* gb, const float* __restrict__ dout, const float* __restrict__ selNorm,
                                        int64_t R, int64_t d) {
  SOPHIA_GRID_LOOP(j, d + 1) {
    if (j < d) {
      float v = gw[j];
      for (int64_t r = 0; r < R; ++r) v += dout[r] * selNorm[r * d + j];
      gw[j] = v;
    } else {
      double s = 0.0;
      for (int64_t r = 0; r < R; ++r) s += dout[r];
      gb[0] += float(s);
    }
  }
}

// part[chunk] = Σ g² over one kNormChunk slice, in double, by a fixed tree
__global__ void __launch_bounds__(256) sumsq_kernel(double* part, const float* __restrict__ g, int64_t n) {
  __shared__ double sh[256];
  const int64_t b = int64_t(blockIdx.x) * kNormChunk, e = min(n, b + kNormChunk);
  double s = 0.0;
  for (int64_t i = b + threadIdx.x; i < e; i += 256) s += double(g[i]) * double(g[i]);
  sh[threadIdx.x] = s;
  __syncthreads();
  for (unsigned w = 128; w > 0; w >>= 1) {
    if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

struct AdamArgs {
  float lr, beta1, omb1, beta2, omb2, eps, decay, clipScale, bc1, bc2;
};

// The CPU's update, element for element
__global__ void adamw_kernel(float* p, const float* __restrict__ gr, float* m, float* v, int64_t n, AdamArgs a) {
  SOPHIA_GRID_LOOP(i, n) {
    const float gi = gr[i] * a.clipScale;
    m[i] = a.beta1 * m[i] + a.omb1 * gi;
    v[i] = a.beta2 * v[i] + a.omb2 * gi * gi;
    const float mh = m[i] / a.bc1, vh = v[i] / a.bc2;
    p[i] -= a.lr * mh / (sqrtf(vh) + a.eps) + a.decay * p[i];
  }
}

// Block s copies prompt s / G's keys and values (rows seq[p] .. seq[p+1]-1 of k, v [N, kvd]) into
// its cache slot kc[s], vc[s] ([stride] floats each).
__global__ void kv_seed_kernel(float* kc, float* vc, const float* __restrict__ k, const float* __restrict__ v,
                               const int32_t* __restrict__ seq, int64_t G, int64_t stride, int64_t kvd) {
  const int64_t s = blockIdx.x, p = s / G, start = seq[p], n = (int64_t(seq[p + 1]) - start) * kvd;
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) {
    kc[s * stride + e] = k[start * kvd + e];
    vc[s * stride + e] = v[start * kvd + e];
  }
}

// Row r's new key and value go to position pos[r] of cache slot slot[r].
__global__ void kv_store_kernel(float* kc, float* vc, const float* __restrict__ k, const float* __restrict__ v,
                                const int32_t* __restrict__ slot, const int32_t* __restrict__ pos, int64_t R, int64_t stride,
                                int64_t kvd) {
  SOPHIA_GRID_LOOP(e, R * kvd) {
    const int64_t r = e / kvd, j = e % kvd, at = int64_t(slot[r]) * stride + int64_t(pos[r]) * kvd + j;
    kc[at] = k[e];
    vc[at] = v[e];
  }
}

#undef SOPHIA_GRID_LOOP

// Groups rows n (key[n] >= 0) by key, rows in increasing order within a key.
void build_segments(const std::vector<int32_t>& key, std::vector<int32_t>& target, std::vector<int32_t>& start,
                    std::vector<int32_t>& order) {
  std::vector<std::pair<int32_t, int32_t>> kn;
  for (size_t n = 0; n < key.size(); ++n)
    if (key[n] >= 0) kn.push_back({key[n], int32_t(n)});
  std::sort(kn.begin(), kn.end());
  target.clear();
  start.clear();
  order.resize(kn.size());
  for (size_t i = 0; i < kn.size(); ++i) {
    if (i == 0 || kn[i].first != kn[i - 1].first) {
      target.push_back(kn[i].first);
      start.push_back(int32_t(i));
    }
    order[i] = kn[i].second;
  }
  start.push_back(int32_t(kn.size()));
}

// The LM head's backward with column `skip` of dout [R, V] taken as 0 (the masked <image> logit
// is a constant), without copying dout: the sums over V skip it, and its weight row gets nothing.
void lm_head_backward(float* dselN, float* gW, const float* dout, const float* selNorm, const float* W, int64_t R, int64_t d,
                      int64_t V, int64_t skip, const Exec& ex) {
  if (skip < 0) {
    nn::matmul_backward(dselN, gW, nullptr, dout, selNorm, W, R, d, V, false, ex);
    return;
  }
  const int64_t after = V - skip - 1;
  gemm(R, d, skip, dout, V, false, W, d, false, dselN, d, false, ex);
  gemm(R, d, after, dout + skip + 1, V, false, W + (skip + 1) * d, d, false, dselN, d, true, ex);
  gemm(skip, d, R, dout, V, true, selNorm, d, false, gW, d, true, ex);
  gemm(after, d, R, dout + skip + 1, V, true, selNorm, d, false, gW + (skip + 1) * d, d, true, ex);
}

}  // namespace

// ---- Model ----

Model::Model(const Config& c, uint64_t seed) : cfg_(c), layout_(layout(c)) {
  SOPHIA_CUDA_CHECK(cudaGetDevice(&device_));
  for (const auto& t : layout_) {
    n_ = std::max(n_, t.offset + t.size);
    offset_[t.name] = t.offset;
  }
  state_.reserve(16 * n_);
  params_ = static_cast<float*>(state_.data());
  grads_ = params_ + n_;
  m_ = grads_ + n_;
  v_ = m_ + n_;
  {
    std::vector<float> init(static_cast<size_t>(n_), 0.f);
    model::init_params(c, seed, init.data());  // the CPU's initialisation, bit for bit
    SOPHIA_CUDA_CHECK(cudaMemcpy(params_, init.data(), size_t(n_) * 4, cudaMemcpyHostToDevice));
  }
  SOPHIA_CUDA_CHECK(cudaMemset(grads_, 0, size_t(3 * n_) * 4));
  work_.reserve(4 * kWorkFloats);
  sync();
}

Model::~Model() { cudaSetDevice(device_); }  // the buffers are freed after this, on their device

void Model::bind() const { SOPHIA_CUDA_CHECK(cudaSetDevice(device_)); }

int64_t Model::bytesAllocated() const {
  return state_.bytes() + work_.bytes() + arena_.bytes() + scratch_.bytes() + index_.bytes() + norms_.bytes();
}

void Model::maskImageLogit(float* logits, int64_t R) const {
  if (cfg_.imageSize == 0 || R == 0) return;
  mask_column_kernel<<<grid_for(R, 256), 256>>>(logits, R, cfg_.vocab, cfg_.imageToken);
  check_launch();
}

void Model::sync() const { SOPHIA_CUDA_CHECK(cudaStreamSynchronize(nullptr)); }

static float* state_of(const std::string& which, float* p, float* g, float* m, float* v) {
  if (which == "params") return p;
  if (which == "grads") return g;
  if (which == "adamM") return m;
  if (which == "adamV") return v;
  throw Error("E_RANGE", "model state: which must be params, grads, adamM or adamV, got " + which);
}

void Model::copyState(const std::string& which, float* host) const {
  bind();
  const float* src = state_of(which, params_, grads_, m_, v_);
  SOPHIA_CUDA_CHECK(cudaMemcpy(host, src, size_t(n_) * 4, cudaMemcpyDeviceToHost));
}

void Model::setState(const std::string& which, const float* host) {
  bind();
  float* dst = state_of(which, params_, grads_, m_, v_);
  SOPHIA_CUDA_CHECK(cudaMemcpy(dst, host, size_t(n_) * 4, cudaMemcpyHostToDevice));
  sync();
}

const float* Model::w(const std::string& name) const {
  auto it = offset_.find(name);
  if (it == offset_.end()) throw Error("E_INTERNAL", "no parameter named " + name);
  return params_ + it->second;
}
float* Model::g(const std::string& name) {
  auto it = offset_.find(name);
  if (it == offset_.end()) throw Error("E_INTERNAL", "no parameter named " + name);
  return grads_ + it->second;
}

Model::BlockW Model::blockW(const std::string& p) const {
  return {w(p + "norm1"), w(p + "attn.wq"), w(p + "attn.wk"), w(p + "attn.wv"), w(p + "attn.wo"),
          w(p + "norm2"), w(p + "mlp.w_gate"), w(p + "mlp.w_up"), w(p + "mlp.w_down")};
}
Model::BlockG Model::blockG(const std::string& p) {
  return {g(p + "norm1"), g(p + "attn.wq"), g(p + "attn.wk"), g(p + "attn.wv"), g(p + "attn.wo"),
          g(p + "norm2"), g(p + "mlp.w_gate"), g(p + "mlp.w_up"), g(p + "mlp.w_down")};
}

// arena null: only counts (used). The layout is model_arena.h's, as on the CPU.
void Model::planStack(Stack& st, const BlockShape& s, int64_t L, const std::vector<int32_t>& seq, float* arena, int64_t& used) {
  st.shape = s;
  st.seq = seq;
  const int64_t probFloats = stack_index(st.seq, s.H, st.probOff, st.pos);
  plan_blocks(st.blocks, st.out, s, L, probFloats, arena, used);
}

void Model::blockForward(const BlockW& W, BlockA& A, const BlockShape& s, const Stack& st, float* xout) {
  const Exec ex = exec_of(work_);
  const int64_t N = s.N, d = s.d, kvd = s.Hkv * s.hd, F = s.F;
  nn::rmsnorm_forward(A.ln1, A.rstd1, A.xin, W.n1, N, d, cfg_.normEps, ex);
  nn::matmul_forward(A.q, A.ln1, W.wq, nullptr, N, d, d, ex);
  nn::matmul_forward(A.k, A.ln1, W.wk, nullptr, N, d, kvd, ex);
  nn::matmul_forward(A.v, A.ln1, W.wv, nullptr, N, d, kvd, ex);
  if (s.rope) {
    nn::rope(A.q, st.dPos, N, s.H, s.hd, cfg_.ropeTheta, false, ex);
    nn::rope(A.k, st.dPos, N, s.Hkv, s.hd, cfg_.ropeTheta, false, ex);
  }
  nn::AttnShape as{N, int64_t(st.seq.size()) - 1, s.H, s.Hkv, s.hd, st.dSeq, st.dProbOff, s.causal};
  nn::attention_forward(A.ao, A.att, A.q, A.k, A.v, as, ex);
  copy_d2d(A.xmid, A.xin, N * d);
  gemm(N, d, d, A.ao, d, false, W.wo, d, true, A.xmid, d, true, ex);
  nn::rmsnorm_forward(A.ln2, A.rstd2, A.xmid, W.n2, N, d, cfg_.normEps, ex);
  nn::matmul_forward(A.g, A.ln2, W.wg, nullptr, N, d, F, ex);
  nn::matmul_forward(A.u, A.ln2, W.wu, nullptr, N, d, F, ex);
  nn::swiglu_forward(A.h, A.g, A.u, N * F, ex);
  copy_d2d(xout, A.xmid, N * d);
  gemm(N, d, F, A.h, F, false, W.wd, F, true, xout, d, true, ex);
}

void Model::blockBackward(const BlockW& W, BlockG& G, const BlockA& A, const BlockShape& s, const Stack& st, float* dx) {
  const Exec ex = exec_of(work_);
  const int64_t N = s.N, d = s.d, kvd = s.Hkv * s.hd, F = s.F;
  float* dh = blockScratch_;  // dh, dg, du, dln, dq, dao, dk, dv (block_scratch_floats)
  float* dg = dh + arena_align(N * F);
  float* du = dg + arena_align(N * F);
  float* dln = du + arena_align(N * F);
  float* dq = dln + arena_align(N * d);
  float* dao = dq + arena_align(N * d);
  float* dk = dao + arena_align(N * d);
  float* dv = dk + arena_align(N * kvd);
  nn::matmul_backward(dh, G.wd, nullptr, dx, A.h, W.wd, N, F, d, false, ex);
  nn::swiglu_backward(dg, du, dh, A.g, A.u, N * F, ex);
  nn::matmul_backward(dln, G.wg, nullptr, dg, A.ln2, W.wg, N, d, F, false, ex);
  nn::matmul_backward(dln, G.wu, nullptr, du, A.ln2, W.wu, N, d, F, true, ex);
  nn::rmsnorm_backward(dx, G.n2, dln, A.xmid, W.n2, A.rstd2, N, d, true, ex);
  nn::matmul_backward(dao, G.wo, nullptr, dx, A.ao, W.wo, N, d, d, false, ex);
  nn::AttnShape as{N, int64_t(st.seq.size()) - 1, s.H, s.Hkv, s.hd, st.dSeq, st.dProbOff, s.causal};
  nn::attention_backward(dq, dk, dv, dao, A.att, A.q, A.k, A.v, as, ex);
  if (s.rope) {
    nn::rope(dq, st.dPos, N, s.H, s.hd, cfg_.ropeTheta, true, ex);
    nn::rope(dk, st.dPos, N, s.Hkv, s.hd, cfg_.ropeTheta, true, ex);
  }
  nn::matmul_backward(dln, G.wq, nullptr, dq, A.ln1, W.wq, N, d, d, false, ex);
  nn::matmul_backward(dln, G.wk, nullptr, dk, A.ln1, W.wk, N, d, kvd, true, ex);
  nn::matmul_backward(dln, G.wv, nullptr, dv, A.ln1, W.wv, N, d, kvd, true, ex);
  nn::rmsnorm_backward(dx, G.n1, dln, A.xin, W.n1, A.rstd1, N, d, true, ex);
}

void Model::stackForward(Stack& st, const std::string& prefix, int64_t L, const float* x0) {
  copy_d2d(st.blocks.empty() ? st.out : st.blocks[0].xin, x0, st.shape.N * st.shape.d);
  for (int64_t l = 0; l < L; ++l) {
    float* xout = l + 1 < L ? st.blocks[l + 1].xin : st.out;
    blockForward(blockW(prefix + std::to_string(l) + "."), st.blocks[l], st.shape, st, xout);
  }
}

void Model::stackBackward(Stack& st, const std::string& prefix, int64_t L, float* dx) {
  for (int64_t l = L - 1; l >= 0; --l) {
    const std::string p = prefix + std::to_string(l) + ".";
    BlockG G = blockG(p);
    blockBackward(blockW(p), G, st.blocks[l], st.shape, st, dx);
  }
}

// What a device fault would otherwise find: ids, starts, rows and image tokens out of range.
void Model::checkBatch(const Batch& b) const {
  const Config& c = cfg_;
  auto fail = [](const std::string& m) { throw Error("E_RANGE", "cuda model forward: " + m); };
  auto s = [](int64_t v) { return std::to_string(v); };
  if (b.N < 1 || b.B < 1 || !b.tokens || !b.seq) fail("the batch needs tokens and at least one sequence");
  if (b.seq[0] != 0 || b.seq[b.B] != b.N) fail("sequence starts must run from 0 to N (" + s(b.N) + ")");
  for (int64_t q = 0; q < b.B; ++q) {
    const int64_t len = int64_t(b.seq[q + 1]) - b.seq[q];
    if (len < 1 || len > c.context) fail("sequence " + s(q) + " has length " + s(len) + ", not in [1, " + s(c.context) + "]");
  }
  for (int64_t n = 0; n < b.N; ++n)
    if (b.tokens[n] < 0 || b.tokens[n] >= c.vocab) fail("token " + s(n) + " is " + s(b.tokens[n]) + ", not in [0, " + s(c.vocab) + ")");
  if (b.imageOf) {
    if (b.images > 0 && !b.pixels) fail("images without pixels");
    for (int64_t q = 0; q < b.B; ++q) {
      const int32_t io = b.imageOf[q];
      if (io < -1 || io >= b.images) fail("imageOf[" + s(q) + "] is " + s(io) + ", not in [-1, " + s(b.images) + ")");
      if (io < 0) continue;
      if (c.imageSize == 0) fail("a text-only model got an image for sequence " + s(q));
      int64_t count = 0;
      for (int64_t n = b.seq[q]; n < b.seq[q + 1]; ++n) count += b.tokens[n] == c.imageToken;
      if (count != c.visualTokens())
        fail("sequence " + s(q) + " has " + s(count) + " image tokens, its image gives " + s(c.visualTokens()));
    }
  }
  if (!c.rewardHead) {
    if (b.M < 0 || (b.M > 0 && !b.rows)) fail("rows missing");
    for (int64_t i = 0; i < b.M; ++i) {
      if (b.rows[i] < 0 || b.rows[i] >= b.N) fail("rows[" + s(i) + "] is " + s(b.rows[i]) + ", not in [0, " + s(b.N) + ")");
      if (i > 0 && b.rows[i] <= b.rows[i - 1]) fail("rows must be strictly increasing");
    }
  }
}

void Model::forward(const Batch& b, float* out, float* scoreLogits) {
  haveForward_ = false;
  bind();
  checkBatch(b);
  const Config& c = cfg_;
  const Exec ex = exec_of(work_);
  const int64_t d = c.dim, N = b.N, np = c.visualTokens();
  tokens_.assign(b.tokens, b.tokens + N);
  seq_.assign(b.seq, b.seq + b.B + 1);
  imageOf_.assign(static_cast<size_t>(b.B), -1);
  if (b.imageOf) imageOf_.assign(b.imageOf, b.imageOf + b.B);
  images_ = b.imageOf ? b.images : 0;
  if (c.rewardHead) {
    rows_.resize(static_cast<size_t>(b.B));
    for (int64_t q = 0; q < b.B; ++q) rows_[q] = seq_[q + 1] - 1;
  } else {
    rows_.assign(b.rows, b.rows + b.M);
  }
  const int64_t R = int64_t(rows_.size()), NV = images_ * np;
  imgRow_.assign(static_cast<size_t>(N), -1);
  for (int64_t q = 0; q < b.B; ++q) {
    if (imageOf_[q] < 0) continue;
    int64_t j = 0;
    for (int64_t n = seq_[q]; n < seq_[q + 1]; ++n)
      if (tokens_[n] == c.imageToken) imgRow_[n] = int32_t(imageOf_[q] * np + j++);
  }
  std::vector<int32_t> embKey(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) embKey[n] = imgRow_[n] >= 0 ? -1 : tokens_[n];
  build_segments(embKey, embSeg_.target, embSeg_.start, embSeg_.order);
  build_segments(imgRow_, visSeg_.target, visSeg_.start, visSeg_.order);

  if (NV == 0) vis_ = Stack{};
  visEmb_ = visNorm_ = visRstd_ = visTok_ = nullptr;
  const BlockShape visShape{NV, d, c.visionHeads, c.visionHeads, d / c.visionHeads, c.visionFfn, false, false};
  const BlockShape decShape{N, d, c.heads, c.kvHeads, c.headDim(), c.ffn, true, true};
  std::vector<int32_t> visSeq(static_cast<size_t>(images_ + 1));
  for (int64_t i = 0; i <= images_; ++i) visSeq[i] = int32_t(i * np);
  // Two passes: sizes first, then views into the (possibly grown) arena.
  for (int pass = 0; pass < 2; ++pass) {
    float* base = pass == 0 ? nullptr : static_cast<float*>(arena_.data());
    int64_t used = 0;
    auto take = [&](int64_t n) -> float* {
      float* p = base ? base + used : nullptr;
      used += arena_align(n);
      return p;
    };
    patches_ = take(NV * c.patchDim());
    if (NV > 0) {
      visEmb_ = take(NV * d);
      planStack(vis_, visShape, c.visionLayers, visSeq, base, used);
      visNorm_ = take(NV * d);
      visRstd_ = take(NV);
      visTok_ = take(NV * d);
    }
    x0_ = take(N * d);
    planStack(dec_, decShape, c.layers, seq_, base, used);
    sel_ = take(R * d);
    selNorm_ = take(R * d);
    selRstd_ = take(R);
    if (pass == 0) {
      int64_t sq = 0;
      for (int64_t q = 0; q < b.B; ++q) sq += int64_t(seq_[q + 1] - seq_[q]) * (seq_[q + 1] - seq_[q]);
      const MemoryPlan mp = plan_training(c, N, R, images_, sq);
      if (4 * used != mp.activations + mp.attention) throw Error("E_INTERNAL", "cuda model arena size differs from its memory plan");
      arena_.reserve(4 * std::max<int64_t>(used, 16));
    }
  }

  Upload up;
  const int64_t oTok = up.add(tokens_), oImg = up.add(imgRow_), oRows = up.add(rows_);
  const int64_t oVS = up.add(vis_.seq), oVP = up.add(vis_.pos), oVO = up.add(vis_.probOff);
  const int64_t oDS = up.add(dec_.seq), oDP = up.add(dec_.pos), oDO = up.add(dec_.probOff);
  const int64_t oET = up.add(embSeg_.target), oES = up.add(embSeg_.start), oEO = up.add(embSeg_.order);
  const int64_t oIT = up.add(visSeg_.target), oIS = up.add(visSeg_.start), oIO = up.add(visSeg_.order);
  up.commit(index_);
  const int32_t* dTokens = up.at<int32_t>(oTok);
  const int32_t* dImgRow = up.at<int32_t>(oImg);
  dRows_ = up.at<int32_t>(oRows);
  vis_.dSeq = up.at<int32_t>(oVS), vis_.dPos = up.at<int32_t>(oVP), vis_.dProbOff = up.at<int64_t>(oVO);
  dec_.dSeq = up.at<int32_t>(oDS), dec_.dPos = up.at<int32_t>(oDP), dec_.dProbOff = up.at<int64_t>(oDO);
  embSeg_.dTarget = up.at<int32_t>(oET), embSeg_.dStart = up.at<int32_t>(oES), embSeg_.dOrder = up.at<int32_t>(oEO);
  visSeg_.dTarget = up.at<int32_t>(oIT), visSeg_.dStart = up.at<int32_t>(oIS), visSeg_.dOrder = up.at<int32_t>(oIO);

  if (NV > 0) {
    // Patches are cut on the host, as in model.cpp, and uploaded.
    const int64_t P = c.patch, S = c.imageSize, gp = c.patchesPerSide(), pd = c.patchDim();
    std::vector<float> patches(static_cast<size_t>(NV * pd));
    for (int64_t i = 0; i < images_; ++i)
      for (int64_t py = 0; py < gp; ++py)
        for (int64_t px = 0; px < gp; ++px) {
          float* dst = patches.data() + ((i * np) + py * gp + px) * pd;
          for (int64_t ch = 0; ch < c.channels; ++ch)
            for (int64_t y = 0; y < P; ++y)
              for (int64_t x = 0; x < P; ++x)
                dst[(ch * P + y) * P + x] = b.pixels[((i * c.channels + ch) * S + py * P + y) * S + px * P + x] - 0.5f;
        }
    SOPHIA_CUDA_CHECK(cudaMemcpy(patches_, patches.data(), patches.size() * 4, cudaMemcpyHostToDevice));
    nn::matmul_forward(visEmb_, patches_, w("vis.patch.w"), w("vis.patch.b"), NV, pd, d, ex);
    add_pos_kernel<<<grid_for(NV * d, 256), 256>>>(visEmb_, w("vis.pos"), NV, np, d);
    check_launch();
    stackForward(vis_, "vis.blocks.", c.visionLayers, visEmb_);
    nn::rmsnorm_forward(visNorm_, visRstd_, vis_.out, w("vis.norm"), NV, d, c.normEps, ex);
    nn::matmul_forward(visTok_, visNorm_, w("vis.proj.w"), w("vis.proj.b"), NV, d, d, ex);
  }
  embed_kernel<<<grid_for(N * d, 256), 256>>>(x0_, w("tok_emb"), visTok_, dTokens, dImgRow, N, d);
  check_launch();
  stackForward(dec_, "blocks.", c.layers, x0_);
  gather_rows_kernel<<<grid_for(R * d, 256), 256>>>(sel_, dec_.out, dRows_, R, d);
  check_launch();
  nn::rmsnorm_forward(selNorm_, selRstd_, sel_, w("norm"), R, d, c.normEps, ex);
  if (c.rewardHead) {
    score_forward_kernel<<<grid_for(R * 32, 256), 256>>>(out, scoreLogits, selNorm_, w("score.w"), w("score.b"), R, d);
    check_launch();
  } else {
    nn::matmul_forward(out, selNorm_, w(c.tieEmbeddings ? "tok_emb" : "lm_head"), nullptr, R, d, c.vocab, ex);
    maskImageLogit(out, R);
  }
  sync();
  haveForward_ = true;
}

void Model::backward(const float* dout) {
  if (!haveForward_) throw Error("E_STATE", "backward: no forward pass to differentiate (call forward first; generate() discards it)");
  bind();
  const Config& c = cfg_;
  const Exec ex = exec_of(work_);
  const int64_t d = c.dim, N = int64_t(tokens_.size()), R = int64_t(rows_.size()), np = c.visualTokens(), NV = images_ * np;
  scratch_.reserve(4 * std::max<int64_t>(16, scratch_floats(c, N, R, NV)));
  float* dx = static_cast<float*>(scratch_.data());
  float* dsel = dx + arena_align(N * d);
  float* dselN = dsel + arena_align(R * d);
  float* dvtok = dselN + arena_align(R * d);
  float* dvisN = dvtok + arena_align(NV * d);
  float* dvx = dvisN + arena_align(NV * d);
  blockScratch_ = dx + scratch_front_floats(c, N, R, NV);

  if (c.rewardHead) {
    score_dsel_kernel<<<grid_for(R * d, 256), 256>>>(dselN, dout, w("score.w"), R, d);
    check_launch();
    score_param_grad_kernel<<<grid_for(d + 1, 256), 256>>>(g("score.w"), g("score.b"), dout, selNorm_, R, d);
    check_launch();
  } else {
    const char* head = c.tieEmbeddings ? "tok_emb" : "lm_head";
    lm_head_backward(dselN, g(head), dout, selNorm_, w(head), R, d, c.vocab, c.imageSize > 0 ? c.imageToken : -1, ex);
  }
  nn::rmsnorm_backward(dsel, g("norm"), dselN, sel_, w("norm"), selRstd_, R, d, false, ex);
  zero(dx, N * d);
  scatter_add_rows_kernel<<<grid_for(R * d, 256), 256>>>(dx, dsel, dRows_, R, d);
  check_launch();
  stackBackward(dec_, "blocks.", c.layers, dx);

  const int64_t embT = int64_t(embSeg_.target.size());
  segment_add_kernel<<<grid_for(embT * d, 256), 256>>>(g("tok_emb"), dx, embSeg_.dTarget, embSeg_.dStart, embSeg_.dOrder, embT, d);
  check_launch();
  if (NV > 0) {
    zero(dvtok, NV * d);
    const int64_t visT = int64_t(visSeg_.target.size());
    segment_add_kernel<<<grid_for(visT * d, 256), 256>>>(dvtok, dx, visSeg_.dTarget, visSeg_.dStart, visSeg_.dOrder, visT, d);
    check_launch();
    nn::matmul_backward(dvisN, g("vis.proj.w"), g("vis.proj.b"), dvtok, visNorm_, w("vis.proj.w"), NV, d, d, false, ex);
    nn::rmsnorm_backward(dvx, g("vis.norm"), dvisN, vis_.out, w("vis.norm"), visRstd_, NV, d, false, ex);
    stackBackward(vis_, "vis.blocks.", c.visionLayers, dvx);
    pos_grad_kernel<<<grid_for(np * d, 256), 256>>>(g("vis.pos"), dvx, images_, np, d);
    check_launch();
    nn::matmul_backward(nullptr, g("vis.patch.w"), g("vis.patch.b"), dvx, patches_, w("vis.patch.w"), NV, c.patchDim(), d, false, ex);
  }
  sync();
}

void Model::zeroGrad() {
  bind();
  zero(grads_, n_);
  sync();
}

StepResult Model::step(const AdamW& o) {
  bind();
  StepResult r;
  const int64_t chunks = (n_ + kNormChunk - 1) / kNormChunk;
  if (chunks > INT_MAX) throw Error("E_RANGE", "step: too many parameters");
  norms_.reserve(8 * std::max<int64_t>(1, chunks));
  double* part = static_cast<double*>(norms_.data());
  sumsq_kernel<<<unsigned(chunks), 256>>>(part, grads_, n_);
  check_launch();
  std::vector<double> host(static_cast<size_t>(chunks));
  SOPHIA_CUDA_CHECK(cudaMemcpy(host.data(), part, size_t(chunks) * 8, cudaMemcpyDeviceToHost));
  double ss = 0.0;
  for (double p : host) ss += p;
  r.gradNorm = std::sqrt(ss);
  if (!std::isfinite(r.gradNorm)) {
    r.skipped = true;
    return r;
  }
  if (o.clipNorm > 0.f && r.gradNorm > o.clipNorm) r.clipScale = float(o.clipNorm / (r.gradNorm + 1e-6));
  ++step_;
  AdamArgs a;
  a.lr = o.lr;
  a.beta1 = o.beta1;
  a.omb1 = 1.f - o.beta1;
  a.beta2 = o.beta2;
  a.omb2 = 1.f - o.beta2;
  a.eps = o.eps;
  a.clipScale = r.clipScale;
  a.bc1 = float(1.0 - std::pow(double(o.beta1), double(step_)));
  a.bc2 = float(1.0 - std::pow(double(o.beta2), double(step_)));
  // Neighbouring tensors with the same decay are contiguous: one launch per run of them.
  for (size_t i = 0; i < layout_.size();) {
    size_t j = i + 1;
    while (j < layout_.size() && layout_[j].decay == layout_[i].decay && layout_[j].offset == layout_[j - 1].offset + layout_[j - 1].size) ++j;
    const int64_t off = layout_[i].offset, len = layout_[j - 1].offset + layout_[j - 1].size - off;
    a.decay = layout_[i].decay ? o.lr * o.weightDecay : 0.f;
    adamw_kernel<<<grid_for(len, 256), 256>>>(params_ + off, grads_ + off, m_ + off, v_ + off, len, a);
    check_launch();
    i = j;
  }
  sync();
  return r;
}

void Model::generate(const Generate& gen) {
  const Config& c = cfg_;
  if (c.rewardHead) throw Error("E_CONFIG", "generate: this is a reward model (rewardHead); it scores sequences and cannot sample");
  if (gen.P < 1 || gen.G < 1 || gen.maxNew < 0) throw Error("E_RANGE", "generate: needs P >= 1, G >= 1 and maxNew >= 0");
  bind();
  const Exec ex = exec_of(work_);
  const int64_t d = c.dim, V = c.vocab, kvd = c.kvDim(), F = c.ffn, ctx = c.context, P = gen.P, S = P * gen.G;
  std::fill(gen.outTokens, gen.outTokens + S * gen.maxNew, 0);
  std::fill(gen.outLogp, gen.outLogp + S * gen.maxNew, 0.f);
  std::fill(gen.outLen, gen.outLen + S, 0);
  if (S == 0 || gen.maxNew == 0) return;
  if (S > INT_MAX) throw Error("E_RANGE", "generate: too many streams");

  // One prompt pass for all prompts; its K and V seed every stream's cache.
  std::vector<int32_t> last(static_cast<size_t>(P));
  for (int64_t p = 0; p < P; ++p) last[p] = gen.promptSeq[p + 1] - 1;
  Batch pb;
  pb.N = gen.promptSeq[P];
  pb.B = P;
  pb.tokens = gen.prompt;
  pb.seq = gen.promptSeq;
  pb.images = gen.images;
  pb.pixels = gen.pixels;
  pb.imageOf = gen.imageOf;
  pb.M = P;
  pb.rows = last.data();
  DeviceMemory dLogits;
  dLogits.reserve(4 * std::max(P, S) * V);
  float* dl = static_cast<float*>(dLogits.data());
  std::vector<float> logits(static_cast<size_t>(std::max(P, S) * V));
  forward(pb, dl);
  haveForward_ = false;
  SOPHIA_CUDA_CHECK(cudaMemcpy(logits.data(), dl, size_t(P * V) * 4, cudaMemcpyDeviceToHost));

  const int64_t stride = ctx * kvd, layerFloats = S * stride;
  DeviceMemory cache;
  cache.reserve(4 * 2 * c.layers * layerFloats);
  float* kc = static_cast<float*>(cache.data());
  float* vc = kc + c.layers * layerFloats;
  for (int64_t l = 0; l < c.layers; ++l) {
    const BlockA& A = dec_.blocks[l];
    kv_seed_kernel<<<unsigned(S), 256>>>(kc + l * layerFloats, vc + l * layerFloats, A.k, A.v, dec_.dSeq, gen.G, stride, kvd);
    check_launch();
  }

  std::vector<sampling::Rng> rng;
  rng.reserve(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s) rng.emplace_back(gen.seed * 0x9e3779b97f4a7c15ull + uint64_t(s) * 0xd1b54a32d192ed03ull + 1);
  std::vector<std::pair<float, int32_t>> cand;
  std::vector<int32_t> cur(static_cast<size_t>(S)), pos(static_cast<size_t>(S)), active;
  auto record = [&](int64_t s, int32_t tok, float lp) {
    const int64_t p = s / gen.G, Tp = gen.promptSeq[p + 1] - gen.promptSeq[p];
    const int64_t limit = std::min(gen.maxNew, ctx - Tp);
    gen.outTokens[s * gen.maxNew + gen.outLen[s]] = tok;
    gen.outLogp[s * gen.maxNew + gen.outLen[s]] = lp;
    ++gen.outLen[s];
    cur[s] = tok;
    pos[s] = int32_t(Tp + gen.outLen[s] - 1);  // where this token sits when fed back
    return tok != gen.eos && gen.outLen[s] < limit;
  };
  for (int64_t s = 0; s < S; ++s) {
    float lp;
    const int32_t tok = sampling::sample_token(logits.data() + (s / gen.G) * V, V, gen.temperature, gen.topK, gen.topP, rng[s], &lp, cand);
    if (record(s, tok, lp)) active.push_back(int32_t(s));
  }

  // Decode buffers for S rows: x, ln, q, ao [S, d]; k, v [S, kvd]; gate, up, h [S, F]; rstd [S].
  DeviceMemory buf;
  const int64_t oX = 0, oLn = oX + arena_align(S * d), oQ = oLn + arena_align(S * d), oAo = oQ + arena_align(S * d), oK = oAo + arena_align(S * d),
                oV = oK + arena_align(S * kvd), oGt = oV + arena_align(S * kvd), oUp = oGt + arena_align(S * F), oH = oUp + arena_align(S * F), oRstd = oH + arena_align(S * F),
                total = oRstd + arena_align(S);
  buf.reserve(4 * total);
  float* B0 = static_cast<float*>(buf.data());
  float *x = B0 + oX, *ln = B0 + oLn, *q = B0 + oQ, *ao = B0 + oAo, *k = B0 + oK, *v = B0 + oV, *gt = B0 + oGt, *upb = B0 + oUp,
        *h = B0 + oH, *rstd = B0 + oRstd;
  DeviceMemory ints;  // per step: token, position, cache length and slot of each active row
  ints.reserve(4 * 4 * S);
  std::vector<int32_t> hostInts;
  const float* emb = w("tok_emb");
  const float* head = w(c.tieEmbeddings ? "tok_emb" : "lm_head");
  while (!active.empty()) {
    const int64_t R = int64_t(active.size());
    hostInts.resize(static_cast<size_t>(4 * R));
    for (int64_t r = 0; r < R; ++r) {
      const int64_t s = active[r];
      hostInts[r] = cur[s];
      hostInts[R + r] = pos[s];
      hostInts[2 * R + r] = pos[s] + 1;
      hostInts[3 * R + r] = int32_t(s);
    }
    int32_t* dTok = static_cast<int32_t*>(ints.data());
    int32_t* dPos = dTok + R;
    int32_t* dLen = dPos + R;
    int32_t* dSlot = dLen + R;
    SOPHIA_CUDA_CHECK(cudaMemcpy(dTok, hostInts.data(), size_t(4 * R) * 4, cudaMemcpyHostToDevice));
    gather_rows_kernel<<<grid_for(R * d, 256), 256>>>(x, emb, dTok, R, d);
    check_launch();
    for (int64_t l = 0; l < c.layers; ++l) {
      const BlockW W = blockW("blocks." + std::to_string(l) + ".");
      nn::rmsnorm_forward(ln, rstd, x, W.n1, R, d, c.normEps, ex);
      nn::matmul_forward(q, ln, W.wq, nullptr, R, d, d, ex);
      nn::matmul_forward(k, ln, W.wk, nullptr, R, d, kvd, ex);
      nn::matmul_forward(v, ln, W.wv, nullptr, R, d, kvd, ex);
      nn::rope(q, dPos, R, c.heads, c.headDim(), c.ropeTheta, false, ex);
      nn::rope(k, dPos, R, c.kvHeads, c.headDim(), c.ropeTheta, false, ex);
      float* K = kc + l * layerFloats;
      float* Vc = vc + l * layerFloats;
      kv_store_kernel<<<grid_for(R * kvd, 256), 256>>>(K, Vc, k, v, dSlot, dPos, R, stride, kvd);
      check_launch();
      nn::attention_decode(ao, q, K, Vc, stride, dSlot, dLen, R, c.heads, c.kvHeads, c.headDim(), ex);
      gemm(R, d, d, ao, d, false, W.wo, d, true, x, d, true, ex);
      nn::rmsnorm_forward(ln, rstd, x, W.n2, R, d, c.normEps, ex);
      nn::matmul_forward(gt, ln, W.wg, nullptr, R, d, F, ex);
      nn::matmul_forward(upb, ln, W.wu, nullptr, R, d, F, ex);
      nn::swiglu_forward(h, gt, upb, R * F, ex);
      gemm(R, d, F, h, F, false, W.wd, F, true, x, d, true, ex);
    }
    nn::rmsnorm_forward(ln, rstd, x, w("norm"), R, d, c.normEps, ex);
    nn::matmul_forward(dl, ln, head, nullptr, R, d, V, ex);
    maskImageLogit(dl, R);
    SOPHIA_CUDA_CHECK(cudaMemcpy(logits.data(), dl, size_t(R * V) * 4, cudaMemcpyDeviceToHost));
    std::vector<int32_t> next;
    for (int64_t r = 0; r < R; ++r) {
      const int64_t s = active[r];
      float lp;
      const int32_t tok = sampling::sample_token(logits.data() + r * V, V, gen.temperature, gen.topK, gen.topP, rng[s], &lp, cand);
      if (record(s, tok, lp)) next.push_back(int32_t(s));
    }
    active.swap(next);
  }
  sync();
}

}  // namespace sophia::cuda
