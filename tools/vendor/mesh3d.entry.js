// The parts of three.js the report's 3-D view uses, exposed as window.DFF3D for a
// classic script: module scripts do not load from file:// URLs in Chromium.
import { BufferAttribute, BufferGeometry, Color, DoubleSide, Mesh, MeshBasicMaterial, PerspectiveCamera, Scene,
         WebGLRenderer } from "three";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";
window.DFF3D = { BufferAttribute, BufferGeometry, Color, DoubleSide, Mesh, MeshBasicMaterial, PerspectiveCamera,
                 Scene, WebGLRenderer, OrbitControls };
