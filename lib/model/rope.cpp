#include "model/rope.h"

#include <cmath>
#include <numbers>

namespace ds::model {

std::vector<double> rope_inverse_frequencies(int hs, double theta,
                                             const std::optional<config::RopeScaling>& scaling) {
  std::vector<double> inv(static_cast<size_t>(hs / 2));
  for (int i = 0; i < hs / 2; ++i) inv[i] = 1.0 / std::pow(theta, 2.0 * i / hs);
  if (!scaling) return inv;
  // Wavelengths longer than the original context / low_freq_factor are divided by
  // `factor`; shorter than context / high_freq_factor are kept; in between they blend.
  const config::RopeScaling& s = *scaling;
  const double context = static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = context / s.low_freq_factor;
  const double high_wavelen = context / s.high_freq_factor;
  for (double& f : inv) {
    const double wavelen = 2.0 * std::numbers::pi / f;
    if (wavelen > low_wavelen) {
      f /= s.factor;
    } else if (wavelen >= high_wavelen) {
      const double smooth =
          (context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = (1.0 - smooth) * f / s.factor + smooth * f;
    }
  }
  return inv;
}

}  // namespace ds::model
