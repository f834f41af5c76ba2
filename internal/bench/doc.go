// Package bench reproduces the evaluation of the research behind fsvirt, side by side with the
// tools it is usually compared with: the six workloads, run under every isolation mode at several
// thread counts and execution counts, with latency, throughput, memory and copy-up figures.
//
// Speed is only ever reported as figures measured in one run, to be read as ratios between modes:
// the machines this runs on are noisy, and absolute times mean little from one run to the next.
//
// Nothing here is timing-sensitive in its tests: statistics, output formats, argument parsing and
// the decision whether a mode can run are plain functions. The modes that need root, a FUSE helper
// or a seccomp-capable kernel say why they cannot run instead of failing the whole run.
package bench
