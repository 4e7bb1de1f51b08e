// Per-token GRPO/PPO loss and its derivative w.r.t. the token's log-prob, exactly as in
// shared/reference/kernels.md. One definition, compiled for the CPU and the CUDA backend.
#pragma once
#include <cmath>
#include "common.h"

namespace sophia {

enum class KlType : int32_t { K1 = 0, K2 = 1, K3 = 2 };

struct GrpoCoefs {
  float clipLow = 0.2f, clipHigh = 0.2f;
  float dualClip = 0.f;  // 0 = off, else c > 1, applied where A < 0
  float klCoef = 0.f;
  KlType klType = KlType::K3;
  float entropyCoef = 0.f;
  bool hasRef = false;  // KL is 0 without a reference policy
};

struct TokenLoss {
  float loss;     // pg + klCoef*kl - entropyCoef*H   (H added by the caller when known)
  float pg, kl;   // the two parts, for the metrics
  float logRatio; // r = clamp(logp - oldLogp, -20, 20)
  float dLogp;    // d(pg + klCoef*kl)/d logp, before the aggregation weight
  bool clipped;   // pg2 > pg1
};

SOPHIA_HD float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// kernels.md: rounding must not return the impossible, a log-probability above 0 or an entropy
// below 0 (a peaked row can round to +5e-7 / -1e-7); NaN passes through.
SOPHIA_HD float logp_out(float logp) { return logp > 0.f ? 0.f : logp; }
SOPHIA_HD float entropy_out(float h) { return h < 0.f ? 0.f : h; }

SOPHIA_HD TokenLoss token_loss(float logp, float oldLogp, float refLogp, float adv, const GrpoCoefs& c) {
  TokenLoss t;
  float rawR = logp - oldLogp;
  float r = clampf(rawR, -20.f, 20.f);
  bool rInside = rawR >= -20.f && rawR <= 20.f;
  float ratio = expf(r);
  float pg1 = -adv * ratio;
  float pg2 = -adv * clampf(ratio, 1.f - c.clipLow, 1.f + c.clipHigh);
  float pg = pg1 >= pg2 ? pg1 : pg2;
  bool unclipped = pg1 >= pg2;
  if (c.dualClip > 0.f && adv < 0.f) {
    float pg3 = -adv * c.dualClip;
    if (pg3 < pg) {
      pg = pg3;
      unclipped = false;
    }
  }
  t.pg = pg;
  t.logRatio = r;
  t.clipped = pg2 > pg1;
  float dPg = (unclipped && rInside) ? -adv * ratio : 0.f;

  float kl = 0.f, dKl = 0.f;
  if (c.hasRef) {
    float d = logp - refLogp;
    switch (c.klType) {
      case KlType::K1: kl = d; dKl = 1.f; break;
      case KlType::K2: kl = 0.5f * d * d; dKl = d; break;
      case KlType::K3: {
        float negD = -d;
        float u = clampf(negD, -20.f, 20.f);
        float raw = expf(u) - u - 1.f;
        kl = clampf(raw, -10.f, 10.f);
        bool inside = negD >= -20.f && negD <= 20.f && raw >= -10.f && raw <= 10.f;
        dKl = inside ? 1.f - expf(u) : 0.f;  // u = -d here, so 1 - exp(-d)
        break;
      }
    }
  }
  t.kl = kl;
  t.loss = pg + c.klCoef * kl;
  t.dLogp = dPg + c.klCoef * dKl;
  return t;
}

}  // namespace sophia
