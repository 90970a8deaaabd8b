// Rounding where the reference rounds: the engine builds with -march=native, which lets GCC contract a*b + c into
// one FMA (-ffp-contract=fast), while torch and bitsandbytes round every operation separately. These helpers force a
// value to be rounded to fp32 on its own, so bit-exact reference code does not depend on the compiler or the ISA.
#pragma once

namespace dpo {

// x, rounded to fp32 and opaque to the optimiser (no fusion across it).
inline float rn(float x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(x));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(x));
#else
  volatile float v = x;
  x = v;
#endif
  return x;
}

// The same for a double: the optimizers' host scalars follow Python's float arithmetic, one rounding per operation.
inline double rn(double x) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(x));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(x));
#else
  volatile double v = x;
  x = v;
#endif
  return x;
}

// a*b rounded to fp32 on its own.
inline float mul_rn(float a, float b) { return rn(a * b); }

}  // namespace dpo
