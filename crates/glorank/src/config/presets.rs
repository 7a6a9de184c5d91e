//! The demo presets: `glorank demo --quick` and `glorank demo`.

use super::Config;
use glorank_train::{
    BaselineConfig, Demonstrations, LrDecay, LrSchedule, RewardTrainConfig, RlConfig, SftConfig,
};

impl Config {
    /// What the two demo presets share: a synthetic world whose every candidate gets
    /// feedback from the true click model (`data.pool_feedback`), SFT and Seq2Slate
    /// imitating the labels' top of the pool, a 4-factor retriever, a d = 64 policy that
    /// reads the items' content vectors as the baselines do (`policy.item_content`), small
    /// reward models trained for 2 epochs on one pool list per slate, SFT for up to 12
    /// epochs at lr 2e-3 with a 20-step warmup and a cosine decay to a tenth, RL at lr 2e-4,
    /// baselines at lr 2e-3 with 2 REINFORCE samples, and the GloRank rows' test lists from a
    /// beam of 8; SFT's best epoch and RL's kept step are chosen on validation lists from the
    /// same beam.
    fn demo_base(rl_steps: usize, rl_every: usize, baseline_epochs: usize) -> Self {
        let mut c = Self::default();
        c.data.pool_feedback = true;
        c.data.retriever_factors = 4;
        c.policy.d_model = 64;
        c.policy.item_content = true;
        c.evaluator = RewardTrainConfig::default().with_epochs(2, 2);
        c.evaluator.pool_lists = 1;
        c.simulator = RewardTrainConfig::default().with_epochs(2, 2).with_seed(1);
        c.simulator.pool_lists = 1;
        c.simulator.d_model = 64;
        c.simulator.layers = 2;
        let beam = 8;
        c.sft = SftConfig::default().with(12, 64, 2e-3);
        c.sft.optim = c.sft.optim.clone().with_schedule(LrSchedule {
            warmup_steps: 20,
            decay: LrDecay::Cosine,
            final_factor: 0.1,
        });
        c.sft.demonstrations = Demonstrations::Labels;
        c.sft.valid_beam = beam;
        c.rl = RlConfig::default().with_steps(rl_steps, 16, rl_every);
        c.rl.optim.learning_rate = 2e-4;
        c.rl.keep_best = true;
        c.rl.valid_beam = beam;
        c.baselines = BaselineConfig::default().with(baseline_epochs, 64, 2e-3);
        c.baselines.reinforce_samples = 2;
        c.baselines.label_demonstrations = true;
        c.eval.beam = beam;
        c
    }

    /// The `glorank demo --quick` configuration: a 450-user synthetic world, small models,
    /// few epochs (about two minutes on two cores).
    pub fn quick() -> Self {
        let mut c = Self::demo_base(30, 10, 2);
        c.data.users = 450;
        c.data.items = 300;
        c.data.sessions = 8;
        c.data.history = 20;
        c.data.k_core = 10;
        c.policy.layers = 1;
        c
    }

    /// The `glorank demo` configuration: a 1,000-user, 500-item synthetic world with pools of
    /// 50 and a 4-factor retriever, models and epochs sized for a two-core CPU in a release
    /// build (timings in docs/results.md).
    pub fn demo() -> Self {
        let mut c = Self::demo_base(60, 20, 3);
        c.data.users = 1000;
        c.data.items = 500;
        c.data.history = 30;
        c.policy.layers = 2;
        c
    }
}
