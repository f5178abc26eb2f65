// The SDRAM controller's bench: the controller's RTL (Verilator model of sim.tops.SDRAMTop: the
// controller behind one register on every pin) against the chip model (sdram_model.h).
//
//   sdram_bench --cl=2 --rp=2 ... (hw.sdram_chip.SDRAMTimings.harness_args)
//               [--seed N] [--ops N]            seeded random traffic, checked word by word
//               [--script RULE]                 the model alone: a command sequence that breaks
//                                               RULE, to show the model names it
//
// Traffic: long sequential bursts (row and bank changes), scattered single words, reads and
// writes alternating in one row (bus turnaround), byte-masked writes, idle stretches (so that
// refreshes fall everywhere), random gaps on the command and write-data streams and random
// backpressure on the read data. Every read is compared with a shadow memory. Before it, a
// sequential write and read stream measure the sustained words per cycle.
//
// Prints one JSON line; exits 1 on a mismatch or a broken timing rule (both named on stderr).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "Vsdram_top.h"
#include "sdram_model.h"
#include "verilated.h"

struct Op {
    uint32_t addr;
    bool we;
    uint16_t data;
    unsigned en;
};

static SdramRules rules;
static bool arg_long(const char* a, const char* key, long* out) {
    size_t n = strlen(key);
    if (strncmp(a, key, n) == 0 && a[n] == '=') {
        *out = strtol(a + n + 1, nullptr, 0);
        return true;
    }
    return false;
}

// ---- the model alone, made to break one rule ---------------------------------------------------

struct Script {
    SdramModel chip;
    explicit Script(const SdramRules& r) : chip(r) {}
    bool issue(bool ras, bool cas, bool we, unsigned ba = 0, unsigned a = 0, bool oe = false) {
        SdramPins p{true, true, ras, cas, we, ba, a, 0, 0x1234, oe};
        return chip.edge(p);
    }
    bool masked_nop() {
        SdramPins p{true, false, false, false, false, 0, 0, 3, 0, false};
        return chip.edge(p);
    }
    bool nop(long n) {
        SdramPins p{true, false, false, false, false, 0, 0, 0, 0, false};
        for (long i = 0; i < n; ++i)
            if (!chip.edge(p)) return false;
        return true;
    }
    // The datasheet's power-up sequence, every wait exactly its rule.
    bool init() {
        const long refresh_gap = std::max(rules.rfc, rules.rc) - 1;
        return nop(rules.power_up) && issue(1, 0, 1, 0, 1u << 10) && nop(rules.rp - 1) &&
               issue(1, 1, 0) && nop(refresh_gap) && issue(1, 1, 0) && nop(refresh_gap) &&
               issue(1, 1, 1, 0, unsigned(rules.cl) << 4) && nop(rules.mrd - 1);
    }
    bool act(unsigned b, unsigned row) { return issue(1, 0, 0, b, row); }
    bool read(unsigned b, unsigned col, unsigned dqm = 0) {
        SdramPins p{true, true, false, true, false, b, col, dqm, 0x1234, false};
        return chip.edge(p);
    }
    bool write(unsigned b, unsigned col) { return issue(0, 1, 1, b, col, true); }
    bool pre(unsigned b) { return issue(1, 0, 1, b, 0); }
};

static int run_script(const std::string& rule) {
    Script s(rules);
    const SdramRules& r = rules;
    bool ok;
    if (rule == "power-up") ok = s.nop(r.power_up / 2) && s.issue(1, 0, 1, 0, 1u << 10);
    else if (!s.init()) ok = false;
    else if (rule == "tRCD") ok = s.act(1, 5) && s.nop(r.rcd - 2) && s.read(1, 0x40);
    else if (rule == "tRP") ok = s.act(0, 9) && s.nop(r.ras - 1) && s.pre(0) && s.nop(r.rp - 2) && s.act(0, 9);
    else if (rule == "tRAS") ok = s.act(2, 7) && s.nop(r.ras - 2) && s.pre(2);
    else if (rule == "tRC") ok = s.act(3, 1) && s.nop(r.ras - 1) && s.pre(3) && s.nop(r.rp - 1) && s.act(3, 1);
    else if (rule == "tRRD") ok = s.act(0, 1) && s.nop(r.rrd - 2) && s.act(1, 1);
    else if (rule == "tWR") ok = s.act(1, 3) && s.nop(r.ras - 1) && s.write(1, 8) && s.nop(r.wr - 2) && s.pre(1);
    else if (rule == "tRFC") ok = s.issue(1, 1, 0) && s.nop(r.rfc - 2) && s.act(0, 1);
    else if (rule == "tMRD") ok = s.issue(1, 1, 1, 0, unsigned(r.cl) << 4) && s.nop(r.mrd - 2) && s.act(0, 1);
    else if (rule == "refresh interval") ok = s.nop(r.refi + 10);
    else if (rule == "mode register") ok = s.issue(1, 1, 1, 0, (unsigned(r.cl) << 4) | 2);
    else if (rule == "bus contention") ok = s.act(0, 4) && s.nop(r.rcd - 1) && s.read(0, 1) && s.write(0, 2);
    else if (rule == "bank state") ok = s.read(2, 0);
    // DQM CL - 2 cycles after a READ masks that READ's data (at CL2, in the READ's own cycle).
    else if (rule == "DQM") ok = s.act(0, 4) && s.nop(r.rcd - 1) &&
                                 (r.cl == 2 ? s.read(0, 1, 3) : s.read(0, 1) && s.nop(r.cl - 3) &&
                                  s.masked_nop());
    else {
        fprintf(stderr, "sdram_bench: no script for rule %s\n", rule.c_str());
        return 2;
    }
    if (ok) {
        printf("{\"script\": \"%s\", \"caught\": false}\n", rule.c_str());
        return 0;
    }
    fprintf(stderr, "%s\n", s.chip.error().c_str());
    printf("{\"script\": \"%s\", \"caught\": true, \"cycle\": %ld}\n", rule.c_str(), s.chip.cycle);
    return 1;
}

// ---- the controller against the model ---------------------------------------------------------------

struct Bench {
    Vsdram_top* top;
    SdramModel chip;
    std::mt19937_64 rng;
    std::vector<uint16_t> shadow;
    std::deque<Op> cmds;
    std::deque<Op> wdata;
    std::deque<std::pair<uint32_t, uint16_t>> expect;
    long cycle = 0, words = 0, mismatches = 0;
    double cmd_idle = 0, wdata_idle = 0, rdata_stall = 0;

    Bench(Vsdram_top* t, uint64_t seed) : top(t), chip(rules), rng(seed), shadow(SdramModel::WORDS, 0) {}

    bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; }

    void push(uint32_t addr, bool we, uint16_t data = 0, unsigned en = 3) {
        addr %= SdramModel::WORDS;
        Op op{addr, we, data, en};
        cmds.push_back(op);
        if (we) {
            wdata.push_back(op);
            uint16_t& s = shadow[addr];
            if (en & 1) s = (s & 0xFF00) | (data & 0x00FF);
            if (en & 2) s = (s & 0x00FF) | (data & 0xFF00);
        } else {
            expect.push_back({addr, shadow[addr]});
        }
    }

    // One system clock: inputs for this cycle, the edge, then the chip samples the pins.
    bool step() {
        bool offer_cmd = !cmds.empty() && !chance(cmd_idle);
        bool offer_w = !wdata.empty() && !chance(wdata_idle);
        bool take_r = !chance(rdata_stall);
        top->cmd___05Fvalid = offer_cmd;
        if (!cmds.empty()) top->cmd___05Fpayload = cmds.front().addr | (uint32_t(cmds.front().we) << 24);
        top->wdata___05Fvalid = offer_w;
        if (!wdata.empty()) top->wdata___05Fpayload = wdata.front().data | (wdata.front().en << 16);
        top->rdata___05Fready = take_r;
        uint16_t dq = 0;
        chip.dq_for_next_edge(&dq);
        top->chip___05Fdq_i = dq;
        top->clk = 0;
        top->eval();
        bool cmd_taken = offer_cmd && top->cmd___05Fready;
        bool w_taken = offer_w && top->wdata___05Fready;
        bool r_taken = take_r && top->rdata___05Fvalid;
        uint16_t r_value = top->rdata___05Fpayload;
        top->clk = 1;
        top->eval();
        ++cycle;
        SdramPins p = chip_pins(top);
        if (!chip.edge(p)) {
            fprintf(stderr, "%s\n", chip.error().c_str());
            return false;
        }
        if (cmd_taken) {
            cmds.pop_front();
            ++words;
        }
        if (w_taken) wdata.pop_front();
        if (r_taken) {
            if (expect.empty()) {
                fprintf(stderr, "sdram_bench: a read word nobody asked for at cycle %ld\n", cycle);
                return false;
            }
            auto [addr, want] = expect.front();
            expect.pop_front();
            if (r_value != want && mismatches++ < 5)
                fprintf(stderr, "sdram_bench: read of word 0x%06x returned 0x%04x, expected 0x%04x "
                        "(cycle %ld)\n", addr, r_value, want, cycle);
        }
        return true;
    }

    bool drain(long limit) {
        for (long i = 0; i < limit && (!cmds.empty() || !expect.empty()); ++i)
            if (!step()) return false;
        if (!cmds.empty() || !expect.empty()) {
            fprintf(stderr, "sdram_bench: %zu commands and %zu reads still pending after %ld "
                    "cycles: the controller stalled\n", cmds.size(), expect.size(), limit);
            return false;
        }
        return true;
    }

    // Sustained rate of one long sequential stream, every stream always ready.
    bool stream(bool we, uint32_t start, long n, double* rate) {
        for (long i = 0; i < n; ++i) push(start + i, we, uint16_t(rng()), 3);
        long t0 = cycle, w0 = words;
        while (words - w0 < n)
            if (!step()) return false;
        *rate = double(n) / double(cycle - t0);
        return drain(100000);
    }
};

int main(int argc, char** argv) {
    long seed = 1, ops = 20000, v;
    std::string script;
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        if (parse_rule(a, rules)) continue;
        if (arg_long(a, "--seed", &v)) seed = v;
        else if (arg_long(a, "--ops", &v)) ops = v;
        else if (strncmp(a, "--script=", 9) == 0) script = a + 9;
        else {
            fprintf(stderr, "sdram_bench: unknown argument %s\n", a);
            return 2;
        }
    }
    if (!script.empty()) return run_script(script);

    auto* ctx = new VerilatedContext;
    auto* top = new Vsdram_top{ctx};
    Bench b(top, uint64_t(seed));
    reset_top(top);
    // Power-up: the controller holds every command until its sequence is done.
    long ready_at = -1;
    for (long i = 0; i < 4L * rules.power_up && ready_at < 0; ++i) {
        if (!b.step()) return 1;
        if (top->ready) ready_at = b.cycle;
    }
    if (ready_at < 0) {
        fprintf(stderr, "sdram_bench: the controller never became ready\n");
        return 1;
    }
    double write_rate = 0, read_rate = 0;
    if (!b.stream(true, 0x10000, 1 << 16, &write_rate) || !b.stream(false, 0x10000, 1 << 16, &read_rate))
        return 1;

    std::uniform_int_distribution<uint32_t> any(0, SdramModel::WORDS - 1);
    long generated = 0;
    long refreshes_before = b.chip.refreshes;
    while (generated < ops) {
        b.cmd_idle = b.chance(0.5) ? 0.0 : 0.2;
        b.wdata_idle = b.chance(0.5) ? 0.0 : 0.2;
        b.rdata_stall = b.chance(0.5) ? 0.0 : 0.3;
        int kind = int(b.rng() % 10);
        if (kind < 4) {                                    // a sequential burst
            uint32_t start = any(b.rng);
            long n = 1 + long(b.rng() % 1100);
            bool we = b.chance(0.5);
            for (long i = 0; i < n; ++i) b.push(start + i, we, uint16_t(b.rng()), 3);
            generated += n;
        } else if (kind < 7) {                             // scattered words, masked writes
            for (int i = 0; i < 64; ++i)
                b.push(any(b.rng), b.chance(0.5), uint16_t(b.rng()), 1 + unsigned(b.rng() % 3));
            generated += 64;
        } else if (kind < 9) {                             // read/write turnaround in one row
            uint32_t row_start = any(b.rng) & ~uint32_t(SdramModel::COLS - 1);
            for (int i = 0; i < 64; ++i)
                b.push(row_start + (b.rng() % SdramModel::COLS), i & 1, uint16_t(b.rng()), 3);
            generated += 64;
        } else {                                           // idle: refreshes land anywhere
            if (!b.drain(1000000)) return 1;
            long gap = long(b.rng() % 2000);
            for (long i = 0; i < gap; ++i)
                if (!b.step()) return 1;
        }
        if (!b.drain(2000000)) return 1;
    }
    // The model's refresh-interval rule is checked on every edge; a last stretch of idle
    // cycles makes sure the controller keeps refreshing with nothing to do.
    for (long i = 0; i < 4L * rules.refi; ++i)
        if (!b.step()) return 1;
    const SdramModel& c = b.chip;
    printf("{\"ok\": %s, \"seed\": %ld, \"ops\": %ld, \"cycles\": %ld, \"ready_at\": %ld, "
           "\"reads\": %ld, \"writes\": %ld, \"activates\": %ld, \"precharges\": %ld, "
           "\"refreshes\": %ld, \"max_refresh_gap\": %ld, \"refi\": %d, \"mismatches\": %ld, "
           "\"stream_write_words_per_cycle\": %.4f, \"stream_read_words_per_cycle\": %.4f}\n",
           b.mismatches ? "false" : "true", seed, generated, b.cycle, ready_at, c.reads, c.writes,
           c.activates, c.precharges, c.refreshes - refreshes_before, c.max_refresh_gap,
           rules.refi, b.mismatches, write_rate, read_rate);
    delete top;
    delete ctx;
    return b.mismatches ? 1 : 0;
}
