// GPU benchmark and check of the CUDA kernels, without Node (the GPU image has none): builds
// from the same native/cpu and native/cuda sources as the addon. For each V it
//   - fills bf16 logits [N, V] on the device (random, never zeros),
//   - times logprobs, grpoLoss forward, forward+backward and in-place forward+backward with CUDA
//     events (median of --reps after a warm-up),
//   - checks sampled rows against the CPU backend and a float64 computation,
//   - reports GB/s against the device-to-device copy bandwidth measured in the same run,
//     and the peak extra device memory of each call.
// Usage: sophia_gpu_bench [--n 16384] [--v 32768,151936] [--reps 20] [--json out.json]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sophia/cuda.h"
#include "sophia/kernels.h"

using namespace sophia;

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(2);                                                                             \
    }                                                                                           \
  } while (0)

__device__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return uint32_t(x);
}

// Logits in [-8, 8) with every 97th entry of some rows at -inf (masked vocabulary).
__global__ void fill_logits(uint16_t* x, int64_t n, int64_t V, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float u = hash32(i * 0x9E3779B97F4A7C15ULL + seed) * (1.f / 4294967296.f);
    float v = u * 16.f - 8.f;
    int64_t row = i / V, col = i % V;
    if (row % 5 == 3 && col % 97 == 0) v = -INFINITY;
    x[i] = f32_to_bf16(v);
  }
}

struct Timer {
  cudaEvent_t a, b;
  Timer() { cudaEventCreate(&a), cudaEventCreate(&b); }
  template <class F> double median_ms(int reps, F&& f) {
    f();
    CK(cudaDeviceSynchronize());
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      cudaEventRecord(a);
      f();
      cudaEventRecord(b);
      cudaEventSynchronize(b);
      float t;
      cudaEventElapsedTime(&t, a, b);
      ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  }
};

static std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> v;
  for (const char* p = s; *p;) {
    v.push_back(std::strtoll(p, const_cast<char**>(&p), 10));
    if (*p == ',') ++p;
  }
  return v;
}

int main(int argc, char** argv) {
  int64_t N = 16384;
  std::vector<int64_t> Vs = {32768, 151936};
  int reps = 20;
  std::string json = "gpu-kernels.json";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--n")) N = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--v")) Vs = parse_list(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--json")) json = argv[i + 1];
  }
  cuda::Status st = cuda::status();
  if (!st.usable) {
    std::fprintf(stderr, "no usable GPU: %s\n", st.reason.c_str());
    return 1;
  }
  cuda::DeviceInfo dev = cuda::device_info();
  double copyBw = cuda::copy_bandwidth(int64_t(1) << 31, 20);
  std::printf("device: %s (sm_%d%d, %d SMs), copy bandwidth %.0f GB/s (read+write)\n", dev.name.c_str(), dev.major, dev.minor,
              dev.smCount, copyBw);

  FILE* out = std::fopen(json.c_str(), "w");
  std::fprintf(out, "{\"device\":\"%s\",\"copyGBps\":%.1f,\"N\":%lld,\"rows\":[", dev.name.c_str(), copyBw, (long long)N);
  bool first = true, allOk = true;
  Timer timer;
  for (int64_t V : Vs) {
    const int64_t n = N * V, bytes = n * 2;
    uint16_t *logits, *grad, *work;
    CK(cudaMalloc(&logits, bytes));
    CK(cudaMalloc(&grad, bytes));
    CK(cudaMalloc(&work, bytes));
    fill_logits<<<4096, 256>>>(logits, n, V, 1234 + V);
    CK(cudaGetLastError());

    std::vector<int32_t> labels(N);
    std::vector<float> old(N), adv(N), weight(N, 1.f / float(N)), ref(N);
    for (int64_t t = 0; t < N; ++t) {
      labels[t] = int32_t((t * 7919 + 13) % V);
      if (t % 5 == 3) labels[t] = int32_t(((t * 7919) % (V / 97)) * 97 + 1);  // avoid the -inf columns
      old[t] = -std::log(float(V)) + 0.3f * std::sin(float(t));
      ref[t] = old[t] + 0.1f * std::cos(float(t));
      adv[t] = float((t % 7) - 3) / 3.f;
    }
    int32_t* dLabels;
    float *dOld, *dRef, *dAdv, *dW, *dOut;
    uint8_t* dClip;
    CK(cudaMalloc(&dLabels, N * 4));
    CK(cudaMalloc(&dOld, N * 4));
    CK(cudaMalloc(&dRef, N * 4));
    CK(cudaMalloc(&dAdv, N * 4));
    CK(cudaMalloc(&dW, N * 4));
    CK(cudaMalloc(&dOut, N * 4 * 6));
    CK(cudaMalloc(&dClip, N));
    CK(cudaMemcpy(dLabels, labels.data(), N * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dOld, old.data(), N * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dRef, ref.data(), N * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dAdv, adv.data(), N * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dW, weight.data(), N * 4, cudaMemcpyHostToDevice));

    LogprobsArgs la;
    la.logits = logits, la.dtype = DType::BF16, la.N = N, la.V = V, la.labels = dLabels, la.logp = dOut, la.entropy = dOut + N;
    GrpoLossArgs ga;
    ga.logits = logits, ga.dtype = DType::BF16, ga.N = N, ga.V = V, ga.labels = dLabels, ga.oldLogp = dOld, ga.refLogp = dRef;
    ga.adv = dAdv, ga.weight = dW, ga.mask = dW, ga.coefs.klCoef = 0.04f, ga.coefs.entropyCoef = 1e-3f, ga.coefs.hasRef = true;
    ga.tokLoss = dOut, ga.tokPg = dOut + N, ga.tokKl = dOut + 2 * N, ga.tokEntropy = dOut + 3 * N, ga.tokLogRatio = dOut + 4 * N;
    ga.tokClipped = dClip;

    size_t free0, total;
    CK(cudaMemGetInfo(&free0, &total));
    double tLp = timer.median_ms(reps, [&] { cuda::logprobs(la); });
    GrpoLossArgs fwd = ga;
    double tFwd = timer.median_ms(reps, [&] { cuda::grpo_loss(fwd); });
    GrpoLossArgs fb = ga;
    fb.gradLogits = grad;
    double tFb = timer.median_ms(reps, [&] { cuda::grpo_loss(fb); });
    GrpoLossArgs ip = ga;
    ip.logits = work, ip.gradLogits = work;
    double tCopy = timer.median_ms(reps, [&] { CK(cudaMemcpy(work, logits, bytes, cudaMemcpyDeviceToDevice)); });
    double tIp = timer.median_ms(reps, [&] {
      CK(cudaMemcpy(work, logits, bytes, cudaMemcpyDeviceToDevice));
      cuda::grpo_loss(ip);
    }) - tCopy;
    size_t free1;
    CK(cudaMemGetInfo(&free1, &total));
    double extraMiB = (double(free0) - double(free1)) / (1 << 20);

    // Check sampled rows against the CPU backend (and the CPU backend against float64).
    const int K = 48;
    std::vector<int64_t> rowsIdx;
    for (int k = 0; k < K; ++k) rowsIdx.push_back((k * 7727 + 3) % N);
    std::vector<uint16_t> hostRows(size_t(K) * V), gpuGrad(size_t(K) * V);
    std::vector<float> gpuTok(N * 5);
    cuda::grpo_loss(fb);
    CK(cudaMemcpy(gpuTok.data(), dOut, N * 4 * 5, cudaMemcpyDeviceToHost));
    for (int k = 0; k < K; ++k) {
      CK(cudaMemcpy(hostRows.data() + k * V, logits + rowsIdx[k] * V, V * 2, cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(gpuGrad.data() + k * V, grad + rowsIdx[k] * V, V * 2, cudaMemcpyDeviceToHost));
    }
    std::vector<int32_t> kl(K);
    std::vector<float> kOld(K), kRef(K), kAdv(K), kW(K), cLoss(K), cPg(K), cKl(K), cEnt(K), cR(K);
    std::vector<uint8_t> cClip(K);
    std::vector<uint16_t> cGrad(size_t(K) * V);
    for (int k = 0; k < K; ++k) {
      int64_t t = rowsIdx[k];
      kl[k] = labels[t], kOld[k] = old[t], kRef[k] = ref[t], kAdv[k] = adv[t], kW[k] = weight[t];
    }
    GrpoLossArgs ca = ga;
    ca.logits = hostRows.data(), ca.N = K, ca.labels = kl.data(), ca.oldLogp = kOld.data(), ca.refLogp = kRef.data();
    ca.adv = kAdv.data(), ca.weight = kW.data(), ca.mask = kW.data(), ca.gradLogits = cGrad.data();
    ca.tokLoss = cLoss.data(), ca.tokPg = cPg.data(), ca.tokKl = cKl.data(), ca.tokEntropy = cEnt.data(), ca.tokLogRatio = cR.data();
    ca.tokClipped = cClip.data();
    cpu::grpo_loss(ca);
    double maxLossErr = 0, maxEntErr = 0, gradErr2 = 0, gradRef2 = 0, maxF64Err = 0;
    for (int k = 0; k < K; ++k) {
      int64_t t = rowsIdx[k];
      maxLossErr = std::max(maxLossErr, double(std::fabs(gpuTok[t] - cLoss[k])));
      maxEntErr = std::max(maxEntErr, double(std::fabs(gpuTok[3 * N + t] - cEnt[k])));
      double m = -INFINITY, s = 0;
      for (int64_t j = 0; j < V; ++j) m = std::max(m, double(bf16_to_f32(hostRows[k * V + j])));
      for (int64_t j = 0; j < V; ++j) s += std::exp(double(bf16_to_f32(hostRows[k * V + j])) - m);
      double h = 0, lse = m + std::log(s);
      for (int64_t j = 0; j < V; ++j) {
        double lp = double(bf16_to_f32(hostRows[k * V + j])) - lse;
        if (lp > -INFINITY) h -= std::exp(lp) * lp;
      }
      maxF64Err = std::max(maxF64Err, std::fabs(h - double(cEnt[k])));
      for (int64_t j = 0; j < V; ++j) {
        double g = bf16_to_f32(gpuGrad[k * V + j]), c = bf16_to_f32(cGrad[k * V + j]);
        gradErr2 += (g - c) * (g - c);
        gradRef2 += c * c;
      }
    }
    double gradRel = std::sqrt(gradErr2 / std::max(gradRef2, 1e-300));
    bool ok = maxLossErr < 1e-4 && maxEntErr < 1e-3 && gradRel < 1e-2 && maxF64Err < 1e-3;
    allOk &= ok;

    auto gbps = [&](double b, double ms) { return b / (ms * 1e-3) / 1e9; };
    double lpBw = gbps(double(bytes), tLp), fwdBw = gbps(double(bytes), tFwd);
    double ideal = 3.0 * double(bytes) / (copyBw * 1e9) * 1e3;  // read twice + write once at copy speed
    std::printf("\nV=%lld bf16, N=%lld (%.2f GB of logits)\n", (long long)V, (long long)N, bytes / 1e9);
    std::printf("  logprobs          %8.3f ms  %7.0f GB/s  %5.1f%% of copy BW (target >= 80%%)\n", tLp, lpBw, 100 * lpBw / copyBw);
    std::printf("  grpoLoss fwd      %8.3f ms  %7.0f GB/s  %5.1f%% of copy BW\n", tFwd, fwdBw, 100 * fwdBw / copyBw);
    std::printf("  grpoLoss fwd+bwd  %8.3f ms  %.2fx the time to read twice + write once (target <= 1.25x)\n", tFb, tFb / ideal);
    std::printf("  fwd+bwd in place  %8.3f ms  %.2fx\n", tIp, tIp / ideal);
    std::printf("  extra device memory during the calls: %.1f MiB (O(N) scratch only)\n", extraMiB);
    std::printf("  check vs CPU on %d rows: max |loss| diff %.2e, max |entropy| diff %.2e, grad rel L2 %.2e; CPU vs float64 entropy %.2e: %s\n",
                K, maxLossErr, maxEntErr, gradRel, maxF64Err, ok ? "ok" : "MISMATCH");
    std::fprintf(out,
                 "%s{\"V\":%lld,\"dtype\":\"bf16\",\"logprobsMs\":%.4f,\"fwdMs\":%.4f,\"fwdBwdMs\":%.4f,\"inplaceMs\":%.4f,"
                 "\"logprobsOfCopy\":%.4f,\"fwdBwdOverIdeal\":%.4f,\"extraMiB\":%.1f,\"gradRelL2\":%.3g,\"ok\":%s}",
                 first ? "" : ",", (long long)V, tLp, tFwd, tFb, tIp, lpBw / copyBw, tFb / ideal, extraMiB, gradRel, ok ? "true" : "false");
    first = false;
    for (void* p : {(void*)logits, (void*)grad, (void*)work, (void*)dLabels, (void*)dOld, (void*)dRef, (void*)dAdv, (void*)dW, (void*)dOut, (void*)dClip})
      cudaFree(p);
  }
  std::fprintf(out, "],\"ok\":%s}\n", allOk ? "true" : "false");
  std::fclose(out);
  return allOk ? 0 : 3;
}
