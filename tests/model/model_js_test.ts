import { fixtureSuite } from "../_model_suite.ts";

fixtureSuite({ backend: "js" });
