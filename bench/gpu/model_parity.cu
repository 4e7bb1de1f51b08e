// Parity of the embedded model's CUDA backend with the CPU backend, without Node. For each case
// (a small config with images, a reward model, a text-only untied model, the default config):
//   - initial parameters bit-identical,
//   - logits (or scores) of one forward on random tokens and images,
//   - every gradient tensor after backward of a random d loss / d out,
//   - the GPU's gradients bit-identical over two runs (determinism),
//   - one AdamW step from each backend's own gradients (elements that moved differently, in units
//     of lr) and from identical gradients (params, m, v),
//   - sampling: tokens equal to the CPU's for the same seed, and the GPU's log-probs of its own
//     samples against a CPU forward over the sampled sequences (teacher forcing),
// then forward+backward and generate throughput on both backends. Exits 1 on any mismatch.
// Usage: sophia_model_parity [--case small|reward|text|default] [--no-timing] [--seed N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cpu/model.h"
#include "cuda/model.cuh"
#include "sophia/cuda.h"

using namespace sophia;
using model::Config;

static bool g_failed = false;

struct Diff {
  double maxAbs = 0, maxRef = 0;
  double rel() const { return maxRef > 0 ? maxAbs / maxRef : (maxAbs > 0 ? INFINITY : 0.0); }
};

static Diff diff(const float* a, const float* ref, int64_t n) {
  Diff d;
  for (int64_t i = 0; i < n; ++i) {
    if (a[i] == ref[i]) continue;  // equal infinities (the masked <image> logit) included
    const double e = std::fabs(double(a[i]) - double(ref[i]));
    d.maxAbs = std::max(d.maxAbs, std::isnan(e) ? INFINITY : e);
  }
  for (int64_t i = 0; i < n; ++i)
    if (std::isfinite(ref[i])) d.maxRef = std::max(d.maxRef, std::fabs(double(ref[i])));
  return d;
}

// Relative error: max |gpu - cpu| / max |cpu| over the tensor.
static void check(const std::string& what, const Diff& d, double tol) {
  const bool ok = d.rel() <= tol;
  if (!ok) g_failed = true;
  std::printf("  %-34s max|d| %-10.3e rel %-10.3e tol %-8.1e %s\n", what.c_str(), d.maxAbs, d.rel(), tol, ok ? "ok" : "FAIL");
}

static void check_true(const std::string& what, bool ok, const std::string& detail = "") {
  if (!ok) g_failed = true;
  std::printf("  %-34s %-44s %s\n", what.c_str(), detail.c_str(), ok ? "ok" : "FAIL");
}

// Device buffer of floats for outputs and d out.
struct DevFloats {
  cuda::DeviceMemory mem;
  explicit DevFloats(int64_t n) { mem.reserve(4 * std::max<int64_t>(n, 1)); }
  float* p() { return static_cast<float*>(mem.data()); }
  void put(const std::vector<float>& h) { cuda::copy_h2d(p(), h.data(), int64_t(h.size()) * 4); }
  std::vector<float> get(int64_t n) {
    std::vector<float> h(static_cast<size_t>(n));
    cuda::copy_d2h(h.data(), p(), n * 4);
    return h;
  }
};

struct Data {
  std::vector<int32_t> tokens, seq, imageOf, rows;
  std::vector<float> pixels;
  int64_t images = 0;
  model::Batch batch(bool reward) const {
    model::Batch b;
    b.N = int64_t(tokens.size());
    b.B = int64_t(seq.size()) - 1;
    b.tokens = tokens.data();
    b.seq = seq.data();
    b.images = images;
    b.pixels = images > 0 ? pixels.data() : nullptr;
    b.imageOf = imageOf.empty() ? nullptr : imageOf.data();
    b.M = reward ? 0 : int64_t(rows.size());
    b.rows = reward ? nullptr : rows.data();
    return b;
  }
};

// B sequences of lengths in [lo, hi]; with images, pairs of sequences share one image (every third
// pair has none). Sequences start with token 2, image tokens follow, the rest is random text.
static Data make_data(const Config& c, int64_t B, int64_t lo, int64_t hi, bool pairs, std::mt19937_64& rng) {
  Data d;
  const int64_t np = c.visualTokens();
  const bool img = c.imageSize > 0;
  d.seq.push_back(0);
  std::uniform_int_distribution<int32_t> tok(4, int32_t(c.vocab - 1));
  for (int64_t q = 0; q < B; ++q) {
    const int64_t pair = pairs ? q / 2 : q;
    int32_t io = -1;
    if (img && pair % 3 != 2) {
      if (!pairs || q % 2 == 0) d.images++;
      io = int32_t(d.images - 1);
    }
    int64_t len = std::uniform_int_distribution<int64_t>(lo, hi)(rng);
    if (io >= 0) len = std::max(len, np + 2);
    len = std::min(len, c.context);
    d.tokens.push_back(2);
    for (int64_t i = 1; i < len; ++i) d.tokens.push_back(io >= 0 && i <= np ? c.imageToken : tok(rng));
    d.seq.push_back(int32_t(d.tokens.size()));
    if (img) d.imageOf.push_back(io);
  }
  std::uniform_real_distribution<float> px(0.f, 1.f);
  d.pixels.resize(static_cast<size_t>(d.images * c.channels * c.imageSize * c.imageSize));
  for (float& v : d.pixels) v = px(rng);
  for (int64_t q = 0; q < B; ++q)
    for (int32_t n = d.seq[q]; n + 1 < d.seq[q + 1]; ++n) d.rows.push_back(n);
  return d;
}

static double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

static double median_s(int reps, const std::function<void()>& f) {
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    f();
    t.push_back(now_s() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

struct Case {
  std::string name;
  Config cfg;
  int64_t B, lo, hi;
};

static Config small_config() {
  Config c;
  c.vocab = 64;
  c.dim = 64;
  c.layers = 2;
  c.heads = 4;
  c.kvHeads = 2;
  c.ffn = 96;
  c.context = 64;
  c.imageSize = 16;
  c.patch = 4;
  c.visionLayers = 1;
  c.visionHeads = 4;
  c.visionFfn = 96;
  return c;
}

static std::vector<float> state(cpu::Model& m, const std::string& which) {
  const float* p = which == "params" ? m.params() : which == "grads" ? m.grads() : which == "adamM" ? m.adamM() : m.adamV();
  return std::vector<float>(p, p + m.numParams());
}
static std::vector<float> state(cuda::Model& m, const std::string& which) {
  std::vector<float> h(static_cast<size_t>(m.numParams()));
  m.copyState(which, h.data());
  return h;
}

// log p(tok) under the temperature-1 distribution of one logits row, in double.
static double logp_of(const float* row, int64_t V, int32_t tok) {
  double mx = -INFINITY;
  for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - mx);
  return double(row[tok]) - mx - std::log(s);
}

static void generate_checks(const Config& c, cpu::Model& cm, cuda::Model& gm, std::mt19937_64& rng) {
  const int64_t P = 3, G = 4;
  Data pr = make_data(c, P, 4, 12, false, rng);
  struct Mode {
    const char* name;
    float temperature;
    int64_t topK;
    float topP;
  };
  for (const Mode& md : {Mode{"sample", 1.f, 0, 1.f}, Mode{"top-k/top-p", 1.f, 10, 0.9f}, Mode{"greedy", 0.f, 0, 1.f}}) {
    model::Generate g;
    g.P = P;
    g.prompt = pr.tokens.data();
    g.promptSeq = pr.seq.data();
    g.images = pr.images;
    g.pixels = pr.images > 0 ? pr.pixels.data() : nullptr;
    g.imageOf = pr.imageOf.empty() ? nullptr : pr.imageOf.data();
    g.G = G;
    g.maxNew = 24;
    g.temperature = md.temperature;
    g.topK = md.topK;
    g.topP = md.topP;
    g.seed = 11;
    g.eos = 1;
    const int64_t S = P * G;
    std::vector<int32_t> ct(S * g.maxNew), gt(S * g.maxNew), cl(S), gl(S);
    std::vector<float> clp(S * g.maxNew), glp(S * g.maxNew);
    model::Generate gc = g, gg = g;
    gc.outTokens = ct.data(), gc.outLogp = clp.data(), gc.outLen = cl.data();
    gg.outTokens = gt.data(), gg.outLogp = glp.data(), gg.outLen = gl.data();
    cm.generate(gc);
    gm.generate(gg);
    int64_t same = 0;
    for (int64_t s = 0; s < S; ++s)
      same += cl[s] == gl[s] && std::equal(ct.begin() + s * g.maxNew, ct.begin() + s * g.maxNew + cl[s], gt.begin() + s * g.maxNew);
    check_true(std::string("generate ") + md.name + ": same tokens", same * 10 >= S * 9,
               std::to_string(same) + "/" + std::to_string(S) + " streams identical (need 90%)");

    // Teacher forcing: the CPU's log-probs of the GPU's samples.
    Data tf;
    tf.seq.push_back(0);
    tf.images = pr.images;
    tf.pixels = pr.pixels;
    std::vector<std::pair<int64_t, int64_t>> where;  // (stream, step) of each row
    bool lengthsOk = true;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t p = s / G, Tp = pr.seq[p + 1] - pr.seq[p];
      if (gl[s] < 1 || gl[s] > g.maxNew) {
        lengthsOk = false;
        continue;
      }
      const int64_t base = int64_t(tf.tokens.size());
      tf.tokens.insert(tf.tokens.end(), pr.tokens.begin() + pr.seq[p], pr.tokens.begin() + pr.seq[p + 1]);
      for (int64_t j = 0; j < gl[s]; ++j) {
        const int32_t t = gt[s * g.maxNew + j];
        if (t < 0 || t >= c.vocab) lengthsOk = false;
        tf.tokens.push_back(std::clamp<int32_t>(t, 0, int32_t(c.vocab - 1)));
        tf.rows.push_back(int32_t(base + Tp - 1 + j));
        where.push_back({s, j});
      }
      tf.seq.push_back(int32_t(tf.tokens.size()));
      if (!pr.imageOf.empty()) tf.imageOf.push_back(pr.imageOf[p]);
    }
    check_true(std::string("generate ") + md.name + ": lengths, ids", lengthsOk);
    if (!lengthsOk) continue;
    std::vector<float> logits(tf.rows.size() * c.vocab);
    cm.forward(tf.batch(false), logits.data());
    double worst = 0;
    for (size_t r = 0; r < where.size(); ++r) {
      const auto [s, j] = where[r];
      const double ref = logp_of(logits.data() + r * c.vocab, c.vocab, gt[s * g.maxNew + j]);
      worst = std::max(worst, std::fabs(ref - glp[s * g.maxNew + j]));
    }
    Diff d;
    d.maxAbs = worst;
    d.maxRef = 1;
    check(std::string("generate ") + md.name + ": logp (abs)", d, 2e-4);
  }
}

static void run_case(const Case& k, uint64_t seed, bool timing) {
  const Config& c = k.cfg;
  std::printf("\n== %s: vocab %lld dim %lld layers %lld heads %lld/%lld ffn %lld context %lld image %lld%s%s\n", k.name.c_str(),
              (long long)c.vocab, (long long)c.dim, (long long)c.layers, (long long)c.heads, (long long)c.kvHeads, (long long)c.ffn,
              (long long)c.context, (long long)c.imageSize, c.rewardHead ? " reward-head" : "", c.tieEmbeddings ? "" : " untied");
  std::mt19937_64 rng(seed);
  cpu::Model cm(c, seed);
  cuda::Model gm(c, seed);
  const int64_t n = cm.numParams();
  std::vector<float> p0 = state(cm, "params");
  {
    const std::vector<float> g0 = state(gm, "params");
    check_true("initial params bit-identical", std::memcmp(p0.data(), g0.data(), size_t(n) * 4) == 0);
  }
  if (c.rewardHead) {  // the score head starts at 0, which would leave every other gradient 0
    std::normal_distribution<float> sd(0.f, 0.5f);
    for (const auto& t : cm.tensors())
      if (t.name.rfind("score.", 0) == 0)
        for (int64_t i = 0; i < t.size; ++i) p0[t.offset + i] = sd(rng);
    std::memcpy(cm.params(), p0.data(), size_t(n) * 4);
    gm.setState("params", p0.data());
  }

  Data data = make_data(c, k.B, k.lo, k.hi, true, rng);
  const model::Batch b = data.batch(c.rewardHead);
  const int64_t outN = c.rewardHead ? b.B : b.M * c.vocab;
  std::printf("  batch: %lld tokens, %lld sequences, %lld images, %lld out rows\n", (long long)b.N, (long long)b.B, (long long)b.images,
              (long long)(c.rewardHead ? b.B : b.M));
  std::vector<float> cOut(outN), cScore(c.rewardHead ? b.B : 0);
  DevFloats gOut(outN), gScore(b.B), gDout(outN);
  cm.forward(b, cOut.data(), c.rewardHead ? cScore.data() : nullptr);
  gm.forward(b, gOut.p(), c.rewardHead ? gScore.p() : nullptr);
  const std::vector<float> gOutH = gOut.get(outN);
  check(c.rewardHead ? "scores" : "logits", diff(gOutH.data(), cOut.data(), outN), 1e-3);
  if (c.rewardHead) check("score logits", diff(gScore.get(b.B).data(), cScore.data(), b.B), 1e-3);

  std::vector<float> dout(outN);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (float& v : dout) v = nd(rng) / float(c.rewardHead ? b.B : b.M);
  gDout.put(dout);
  cm.zeroGrad();
  cm.backward(dout.data());
  gm.zeroGrad();
  gm.backward(gDout.p());
  const std::vector<float> cg = state(cm, "grads"), gg = state(gm, "grads");
  for (const auto& t : cm.tensors()) check("grad " + t.name, diff(gg.data() + t.offset, cg.data() + t.offset, t.size), 1e-2);

  // Determinism: the same batch again gives the same bits.
  gm.zeroGrad();
  gm.forward(b, gOut.p(), c.rewardHead ? gScore.p() : nullptr);
  const std::vector<float> gOut2 = gOut.get(outN);
  gm.backward(gDout.p());
  const std::vector<float> gg2 = state(gm, "grads");
  check_true("GPU rerun: logits and grads same bits",
             std::memcmp(gOut2.data(), gOutH.data(), size_t(outN) * 4) == 0 && std::memcmp(gg2.data(), gg.data(), size_t(n) * 4) == 0);

  // AdamW from each backend's own gradients.
  model::AdamW o;
  o.lr = 1e-3f;
  o.weightDecay = 0.1f;
  o.clipNorm = 1.f;
  const model::StepResult cr = cm.step(o), gr = gm.step(o);
  {
    Diff d;
    d.maxAbs = std::fabs(cr.gradNorm - gr.gradNorm);
    d.maxRef = cr.gradNorm;
    check("step: grad norm", d, 1e-3);
    const std::vector<float> cp = state(cm, "params"), gp = state(gm, "params");
    int64_t moved = 0;
    double worst = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = std::fabs(double(cp[i]) - gp[i]);
      worst = std::max(worst, std::isnan(e) ? INFINITY : e);
      moved += !(e <= 0.1 * o.lr);
    }
    char buf[128];
    std::snprintf(buf, sizeof buf, "%lld of %lld differ by > 0.1 lr (max %.3g lr)", (long long)moved, (long long)n, worst / o.lr);
    check_true("step: params (own grads)", moved * 1000 <= n, buf);
  }
  // AdamW from identical gradients and state: the update itself.
  {
    std::memcpy(cm.params(), p0.data(), size_t(n) * 4);
    std::fill(cm.adamM(), cm.adamM() + n, 0.f);
    std::fill(cm.adamV(), cm.adamV() + n, 0.f);
    cm.adamStep() = 0;
    const std::vector<float> zeros(static_cast<size_t>(n), 0.f);
    gm.setState("params", p0.data());
    gm.setState("adamM", zeros.data());
    gm.setState("adamV", zeros.data());
    gm.setState("grads", cg.data());
    gm.adamStep() = 0;
    const model::StepResult c2 = cm.step(o), g2 = gm.step(o);
    Diff d;
    d.maxAbs = std::fabs(c2.gradNorm - g2.gradNorm);
    d.maxRef = c2.gradNorm;
    check("step same grads: grad norm", d, 1e-9);
    check_true("step same grads: clip, skip, count", c2.clipScale == g2.clipScale && c2.skipped == g2.skipped && cm.adamStep() == gm.adamStep());
    for (const char* which : {"params", "adamM", "adamV"}) {
      const std::vector<float> a = state(gm, which), r = state(cm, which);
      check(std::string("step same grads: ") + which, diff(a.data(), r.data(), n), 1e-5);
    }
  }

  if (!c.rewardHead) generate_checks(c, cm, gm, rng);

  if (!timing) return;
  // Throughput: the same batch on both backends (wall clock; every GPU call ends synchronised).
  const double tokens = double(b.N);
  auto cpuFB = [&] {
    cm.zeroGrad();
    cm.forward(b, cOut.data(), c.rewardHead ? cScore.data() : nullptr);
    cm.backward(dout.data());
  };
  auto gpuFB = [&] {
    gm.zeroGrad();
    gm.forward(b, gOut.p(), c.rewardHead ? gScore.p() : nullptr);
    gm.backward(gDout.p());
  };
  cpuFB();
  const double tc = median_s(3, cpuFB);
  gpuFB();
  gpuFB();
  const double tg = median_s(10, gpuFB);
  std::printf("  forward+backward %lld tokens: cpu %.1f ms (%.0f tok/s)  gpu %.2f ms (%.0f tok/s)  x%.1f\n", (long long)b.N, tc * 1e3,
              tokens / tc, tg * 1e3, tokens / tg, tc / tg);
  if (c.rewardHead) return;
  Data pr = make_data(c, 8, 8, 24, false, rng);
  model::Generate g;
  g.P = 8;
  g.prompt = pr.tokens.data();
  g.promptSeq = pr.seq.data();
  g.images = pr.images;
  g.pixels = pr.images > 0 ? pr.pixels.data() : nullptr;
  g.imageOf = pr.imageOf.empty() ? nullptr : pr.imageOf.data();
  g.G = 8;
  g.maxNew = std::min<int64_t>(64, c.context - 24 - c.visualTokens());
  g.seed = 3;
  g.eos = -1;  // never stops early: every stream makes maxNew tokens (or fills the context)
  const int64_t S = g.P * g.G;
  std::vector<int32_t> ot(S * g.maxNew), ol(S);
  std::vector<float> olp(S * g.maxNew);
  g.outTokens = ot.data(), g.outLogp = olp.data(), g.outLen = ol.data();
  auto count = [&] {
    int64_t t = 0;
    for (int32_t l : ol) t += l;
    return double(t);
  };
  const double t0 = now_s();
  cm.generate(g);
  const double gcS = now_s() - t0, gcT = count();
  gm.generate(g);  // warm-up
  const double t1 = now_s();
  gm.generate(g);
  const double ggS = now_s() - t1, ggT = count();
  std::printf("  generate %lld streams x %lld new: cpu %.0f tok/s  gpu %.0f tok/s  x%.1f\n", (long long)S, (long long)g.maxNew,
              gcT / gcS, ggT / ggS, (gcS / gcT) / (ggS / ggT));
}

int main(int argc, char** argv) {
  std::string only;
  bool timing = true;
  uint64_t seed = 1234;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--case" && i + 1 < argc) only = argv[++i];
    else if (a == "--no-timing") timing = false;
    else if (a == "--seed" && i + 1 < argc) seed = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: sophia_model_parity [--case small|reward|text|default] [--no-timing] [--seed N]\n");
      return 2;
    }
  }
  const cuda::Status st = cuda::status();
  if (!st.usable) {
    std::fprintf(stderr, "no usable CUDA device: %s\n", st.reason.c_str());
    return 2;
  }
  const cuda::DeviceInfo di = cuda::device_info();
  std::printf("device: %s (sm_%d%d, %d SMs)\n", di.name.c_str(), di.major, di.minor, di.smCount);

  std::vector<Case> cases;
  cases.push_back({"small", small_config(), 12, 8, 48});
  Config reward = small_config();
  reward.rewardHead = true;
  cases.push_back({"reward", reward, 10, 8, 48});
  Config text = small_config();
  text.imageSize = 0;
  text.tieEmbeddings = false;
  text.heads = 8;
  text.kvHeads = 8;
  text.dim = 128;  // head size 16: lanes past the head dimension idle
  cases.push_back({"text", text, 9, 2, 64});
  cases.push_back({"default", Config{}, 24, 96, 256});
  for (const Case& k : cases) {
    if (!only.empty() && k.name != only) continue;
    try {
      run_case(k, seed, timing);
    } catch (const Error& e) {
      std::printf("  ERROR %s: %s\n", e.code.c_str(), e.what());
      g_failed = true;
    }
  }
  std::printf("\n%s\n", g_failed ? "FAIL" : "PASS");
  return g_failed ? 1 : 0;
}
