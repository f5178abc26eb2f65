// The feature-map DMA's bench: sim.tops.DMATop (hw.dma.FeatureDMA between a feature buffer and
// the SDRAM controller) against the chip model (sdram_model.h).
//
//   dma_bench --cl=2 ... (hw.sdram_chip.SDRAMTimings.harness_args) --pc=N [--seed S]
//             [--transfers T]
//
// Each transfer: random words into the buffer through the host port, a random 2-D store to the
// SDRAM (runs, run length, strides, bases), every SDRAM word checked in the model's storage
// against the layout (feature word w is SDRAM words w*K .. w*K+K-1, lane 0 lowest), then a
// random 2-D load of a region the stores wrote into another part of the buffer, every buffer
// word checked. Prints one JSON line (SDRAM words per cycle of each direction); exits 1 on a
// mismatch or a broken timing rule, named on stderr.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "Vdma_top.h"
#include "sdram_model.h"
#include "verilated.h"

static SdramRules rules;

struct Bench {
    Vdma_top* top;
    SdramModel chip;
    long cycle = 0;
    Bench(Vdma_top* t) : top(t), chip(rules) {}

    bool step() {
        uint16_t dq = 0;
        chip.dq_for_next_edge(&dq);
        top->chip___05Fdq_i = dq;
        top->clk = 0;
        top->eval();
        top->clk = 1;
        top->eval();
        ++cycle;
        SdramPins p = chip_pins(top);
        if (!chip.edge(p)) {
            fprintf(stderr, "%s\n", chip.error().c_str());
            return false;
        }
        return true;
    }
};

int main(int argc, char** argv) {
    long seed = 1, transfers = 20, pc = 4, read_latency = 1;
    for (int i = 1; i < argc; ++i) {
        long v;
        const char* a = argv[i];
        auto arg = [&](const char* key, long* out) {
            size_t n = strlen(key);
            if (strncmp(a, key, n) == 0 && a[n] == '=') {
                *out = strtol(a + n + 1, nullptr, 0);
                return true;
            }
            return false;
        };
        if (parse_rule(a, rules)) continue;
        if (arg("--seed", &v)) seed = v;
        else if (arg("--transfers", &v)) transfers = v;
        else if (arg("--pc", &v)) pc = v;
        else if (arg("--read-latency", &v)) read_latency = v;
        else {
            fprintf(stderr, "dma_bench: unknown argument %s\n", a);
            return 2;
        }
    }
    const int K = int(pc / 2);                    // SDRAM words per feature word
    const long DEPTH = 4096;
    auto* ctx = new VerilatedContext;
    auto* top = new Vdma_top{ctx};
    Bench b(top);
    std::mt19937_64 rng{uint64_t(seed)};
    auto below = [&](long n) { return long(rng() % uint64_t(n)); };
    reset_top(top);
    while (!top->ready)
        if (!b.step()) return 1;

    // The buffer as the bench last wrote or read it, a word as a byte per lane.
    std::vector<std::vector<uint8_t>> buffer(DEPTH, std::vector<uint8_t>(pc, 0));
    auto host_write = [&](long addr, const std::vector<uint8_t>& w) {
        uint64_t v = 0;
        for (int t = pc - 1; t >= 0; --t) v = (v << 8) | w[t];
        top->host_addr = addr;
        top->host_wr_data = v;
        top->host_wr_en = 1;
        bool ok = b.step();
        top->host_wr_en = 0;
        return ok;
    };
    auto host_read = [&](long addr, std::vector<uint8_t>* w) {
        top->host_addr = addr;
        for (int k = 0; k < read_latency; ++k)   // the address is taken at the first edge,
            if (!b.step()) return false;         // its data out after the last
        top->clk = 0;
        top->eval();
        uint64_t v = top->host_rd_data;
        for (int t = 0; t < pc; ++t) (*w)[t] = uint8_t(v >> (8 * t));
        return true;
    };
    auto transfer = [&](bool to_sdram, long sdram_base, long buffer_base, long run_words,
                        long runs, long sdram_stride, long buffer_stride, long* cycles) {
        top->to_sdram = to_sdram;
        top->sdram_base = sdram_base;
        top->buffer_base = buffer_base;
        top->run_words = run_words;
        top->runs = runs;
        top->sdram_stride = sdram_stride;
        top->buffer_stride = buffer_stride;
        top->start = 1;
        long t0 = b.cycle;
        if (!b.step()) return false;
        top->start = 0;
        for (long i = 0; i < 10'000'000 && !top->done; ++i)
            if (!b.step()) return false;
        if (!top->done) {
            fprintf(stderr, "dma_bench: a transfer never finished\n");
            return false;
        }
        *cycles = b.cycle - t0;
        // A store is done when the controller has its last word; the bench reads the chip
        // model's storage, so it waits for the controller's queue to drain and for the pin
        // registers' cycle.
        for (long i = 0; i < 1000 && !top->sdram_idle; ++i)
            if (!b.step()) return false;
        return b.step() && b.step();
    };

    long mismatches = 0, store_words = 0, store_cycles = 0, load_words = 0, load_cycles = 0;
    for (long n = 0; n < transfers; ++n) {
        // A store: random words in the buffer, out to a random 2-D region of the SDRAM.
        long run_words = 1 + below(300), runs = 1 + below(8);
        long buffer_stride = run_words + below(50), sdram_stride = run_words + below(5000);
        long buffer_base = below(DEPTH - runs * buffer_stride);
        long sdram_base = below(long(SdramModel::WORDS / K) - runs * sdram_stride);
        for (long r = 0; r < runs; ++r)
            for (long i = 0; i < run_words; ++i) {
                std::vector<uint8_t> w(pc);
                for (auto& x : w) x = uint8_t(rng());
                buffer[buffer_base + r * buffer_stride + i] = w;
                if (!host_write(buffer_base + r * buffer_stride + i, w)) return 1;
            }
        long cycles;
        if (!transfer(true, sdram_base, buffer_base, run_words, runs, sdram_stride, buffer_stride,
                      &cycles))
            return 1;
        store_words += runs * run_words * K;
        store_cycles += cycles;
        for (long r = 0; r < runs; ++r)
            for (long i = 0; i < run_words; ++i) {
                const auto& w = buffer[buffer_base + r * buffer_stride + i];
                long f = sdram_base + r * sdram_stride + i;
                for (int j = 0; j < K; ++j) {
                    uint16_t want = uint16_t(w[2 * j] | (w[2 * j + 1] << 8));
                    uint16_t got = b.chip.peek(uint32_t(f * K + j));
                    if (got != want && mismatches++ < 5)
                        fprintf(stderr, "dma_bench: store %ld: SDRAM word 0x%06lx holds 0x%04x, "
                                "expected 0x%04x (feature word %ld, part %d)\n", n, f * K + j,
                                got, want, f, j);
                }
            }
        // A load of part of what was stored, into another place in the buffer.
        long lr = 1 + below(runs), lw = 1 + below(run_words);
        long l_buffer_stride = lw + below(20);
        long l_buffer_base = below(DEPTH - lr * l_buffer_stride);
        if (!transfer(false, sdram_base, l_buffer_base, lw, lr, sdram_stride, l_buffer_stride,
                      &cycles))
            return 1;
        load_words += lr * lw * K;
        load_cycles += cycles;
        for (long r = 0; r < lr; ++r)
            for (long i = 0; i < lw; ++i) {
                std::vector<uint8_t> got(pc);
                if (!host_read(l_buffer_base + r * l_buffer_stride + i, &got)) return 1;
                const auto& want = buffer[buffer_base + r * buffer_stride + i];
                if (got != want && mismatches++ < 5)
                    fprintf(stderr, "dma_bench: load %ld: buffer word %ld differs from the "
                            "stored word (run %ld, word %ld)\n", n,
                            l_buffer_base + r * l_buffer_stride + i, r, i);
            }
        for (long r = 0; r < lr; ++r)
            for (long i = 0; i < lw; ++i)
                buffer[l_buffer_base + r * l_buffer_stride + i] =
                    buffer[buffer_base + r * buffer_stride + i];
    }
    printf("{\"ok\": %s, \"seed\": %ld, \"pc\": %ld, \"transfers\": %ld, \"mismatches\": %ld, "
           "\"store_sdram_words\": %ld, \"store_cycles\": %ld, \"load_sdram_words\": %ld, "
           "\"load_cycles\": %ld, \"store_words_per_cycle\": %.4f, "
           "\"load_words_per_cycle\": %.4f, \"refreshes\": %ld}\n",
           mismatches ? "false" : "true", seed, pc, transfers, mismatches, store_words,
           store_cycles, load_words, load_cycles, double(store_words) / double(store_cycles),
           double(load_words) / double(load_cycles), b.chip.refreshes);
    delete top;
    delete ctx;
    return mismatches ? 1 : 0;
}
